"""What the command groups share: the `--db` option, progress lines on stderr, the optimizer-model options, and
one mapping from promptopt's errors to clean command-line errors."""
from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import click

from promptopt.config import ConfigFileError, default_db_url
from promptopt.evaluators.registry import EvaluatorError
from promptopt.models.pricing import PriceFileError
from promptopt.models.settings import ModelSettingsError
from promptopt.optimizer.loop import RunFailed
from promptopt.optimizer.options import OptionError
from promptopt.optimizer.splits import TooFewCases
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.export import RunNotFinished
from promptopt.runs.report import RunNotFound
from promptopt.runs.resume import ResumeError
from promptopt.runs.store import CaseRejected, StoreError
from promptopt.tasks import TaskFileError

DB_HELP = f"SQLAlchemy database URL of the store (default: $PROMPTOPT_DB or {default_db_url()})."


def db_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--db URL`, as every command that reads or writes the store has it."""
    return click.option("--db", default=None, help=DB_HELP)(command)


def progress(quiet: bool) -> Callable[[str], None]:
    """A progress printer: elapsed seconds and the message, on stderr (nothing when `quiet`)."""
    started = time.monotonic()

    def say(message: str) -> None:
        if not quiet:
            click.echo(f"[{time.monotonic() - started:6.1f}s] {message}", err=True)

    return say


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn promptopt's input, settings and store errors (a missing driver, a lock not had in time) into one-line
    command-line errors (exit 1, or 2 for usage)."""
    try:
        yield
    except CaseFileError as error:
        raise click.ClickException(f"nothing was imported:\n{error}") from None
    except TaskFileError as error:
        raise click.ClickException(str(error)) from None
    except (EvaluatorError, OptionError) as error:
        raise click.UsageError(str(error)) from None
    except (ModelSettingsError, ConfigFileError, PriceFileError) as error:
        raise click.ClickException(str(error)) from None
    except RunNotFound as error:
        raise click.ClickException(f"no run {error.args[0]!r} in the store") from None
    except CaseRejected as error:
        raise click.ClickException(f"nothing was imported:\n{error}") from None
    except StoreError as error:
        raise click.ClickException(str(error)) from None
    except (RunFailed, TooFewCases, RunNotFinished, ResumeError) as error:
        raise click.ClickException(str(error)) from None


def optimizer_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--optimizer-model, --optimizer-base-url, --optimizer-api-key and --config, as `promptopt run` has them."""
    for option in reversed([
        click.option("--optimizer-model", default=None,
                     help="Model that writes prompts; same choices as run's --model. Default: config file, else "
                          "embedded."),
        click.option("--optimizer-base-url", default=None, help="OpenAI-compatible endpoint of --optimizer-model."),
        click.option("--optimizer-api-key", default=None, help="Key for --optimizer-base-url (prefer the variable)."),
        click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
                     help="JSON config file (see `promptopt run --help`)."),
    ]):
        command = option(command)
    return command


def load_optimizer(model: str | None, base_url: str | None, api_key: str | None, config_file: str | None) -> Any:
    """The optimizer-model backend from flags, config file and environment (like `promptopt run`'s)."""
    from promptopt.config import load_config
    from promptopt.models import load_model, resolve_model_settings
    from promptopt.models.pricing import load_prices

    with user_errors():
        config = load_config(config_file)
        settings = resolve_model_settings("optimizer_model", model, base_url, api_key, config)
        return load_model(settings, prices=load_prices(extra=config.get("prices")))
