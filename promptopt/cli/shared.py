"""What the command groups share: the `--db` option, `--quiet`/`--verbose` and the progress they choose, the
optimizer-model options, and one mapping from promptopt's errors to clean command-line errors."""
from __future__ import annotations

import contextlib
import functools
import logging
from typing import Any, Callable, Iterator

import click

from promptopt.config import ConfigFileError, default_db_url
from promptopt.evaluators.registry import EvaluatorError
from promptopt.models.pricing import PriceFileError
from promptopt.models.settings import ModelSettingsError
from promptopt.optimizer.loop import RunFailed
from promptopt.optimizer.options import OptionError
from promptopt.optimizer.splits import TooFewCases
from promptopt.progress import LineProgress, Progress, Verbosity, showing, terminal_progress
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.compare import NothingToCompare
from promptopt.runs.export import RunNotFinished
from promptopt.runs.report import RunNotFound
from promptopt.runs.resume import ResumeError
from promptopt.runs.store import CaseRejected, StoreError
from promptopt.tasks import TaskFileError

DB_HELP = f"SQLAlchemy database URL of the store (default: $PROMPTOPT_DB or {default_db_url()})."


def db_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--db URL`, as every command that reads or writes the store has it."""
    return click.option("--db", default=None, help=DB_HELP)(command)


def progress_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--quiet` and `--verbose` (the last one given wins); the command gets the `Progress` they choose as its
    `progress` argument, which is also `promptopt.progress.current()` while it runs. Verbose also shows promptopt's
    debug log (per-batch figures, warnings from dependencies) on stderr."""

    @functools.wraps(command)
    def with_progress(*args: Any, verbosity: int | None = None, **kwargs: Any) -> Any:
        shown = terminal_progress(Verbosity.NORMAL if verbosity is None else Verbosity(verbosity))
        with showing(shown), _debug_log(shown):
            return command(*args, progress=shown, **kwargs)

    with_progress = click.option("--verbose", "-v", "verbosity", flag_value=int(Verbosity.VERBOSE),
                                 help="Also show promptopt's debug log: per-batch figures, dependency warnings.")(
        with_progress)
    return click.option("--quiet", "-q", "verbosity", flag_value=int(Verbosity.QUIET),
                        help="Print only the result and errors: no progress.")(with_progress)


class _ProgressLog(logging.Handler):
    """Log records as progress lines (above the bars on a terminal)."""

    def __init__(self, progress: LineProgress) -> None:
        super().__init__(logging.DEBUG)
        self.progress = progress
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.progress.write(self.format(record))


@contextlib.contextmanager
def _debug_log(progress: Progress) -> Iterator[None]:
    """While the block runs, show the `promptopt` logger's debug records through a verbose `progress`."""
    if not (progress.verbose and isinstance(progress, LineProgress)):
        yield
        return
    logger = logging.getLogger("promptopt")
    handler, level = _ProgressLog(progress), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


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
    except (RunFailed, TooFewCases, RunNotFinished, ResumeError, NothingToCompare) as error:
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
