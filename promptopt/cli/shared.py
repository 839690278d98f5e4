"""What the command groups share: the `--db` option, `--quiet`/`--verbose` and the progress they choose, the
optimizer-model options, and one mapping from promptopt's errors to clean command-line errors."""
from __future__ import annotations

import contextlib
import functools
import logging
import traceback
from typing import Any, Callable, Iterator

import click

from promptopt.case_selection import SelectionError
from promptopt.cli.setting_flags import setting_option
from promptopt.config import ConfigFileError
from promptopt.evaluators.registry import EvaluatorError
from promptopt.models.embedded_weights import EmbeddedModelMissing
from promptopt.models.pricing import PriceFileError
from promptopt.models.settings import ModelSettingsError
from promptopt.optimizer.loop import RunFailed
from promptopt.optimizer.options import OptionError
from promptopt.optimizer.splits import TooFewCases
from promptopt.progress import LineProgress, Progress, Verbosity, current, showing, terminal_progress
from promptopt.run_settings import SETTINGS
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.compare import NothingToCompare
from promptopt.runs.export import RunNotFinished
from promptopt.runs.mlflow_tracking import RegistryError
from promptopt.runs.report import AmbiguousRunId, RunNotFound
from promptopt.runs.resume import ResumeError
from promptopt.runs.store import CaseRejected, CasesInUse, StoreError
from promptopt.runs.store_errors import disk_full_message, is_disk_full
from promptopt.tasks import TaskFileError

db_option = setting_option(SETTINGS["db"])
"""`--db URL`, as every command that reads or writes the store has it."""


def progress_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`--quiet` and `--verbose` (the last one given wins); the command gets the `Progress` they choose as its
    `progress` argument, which is also `promptopt.progress.current()` while it runs. Verbose also shows promptopt's
    debug log (per-batch figures, warnings from dependencies) and the traceback of a store failure on stderr."""

    @functools.wraps(command)
    def with_progress(*args: Any, verbosity: int | None = None, **kwargs: Any) -> Any:
        shown = terminal_progress(Verbosity.NORMAL if verbosity is None else Verbosity(verbosity))
        with showing(shown), _debug_log(shown), user_errors():
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
    """Turn promptopt's input, settings and store errors (a missing driver, a lock not had in time, a store that
    cannot be reached, read or written) and a full disk into one-line command-line errors (exit 1, or 2 for usage);
    with `--verbose` a store failure's traceback comes first."""
    try:
        yield
    except CaseFileError as error:
        raise click.ClickException(f"nothing was imported:\n{error}") from None
    except TaskFileError as error:
        raise click.ClickException(str(error)) from None
    except (EvaluatorError, OptionError) as error:
        raise click.UsageError(str(error)) from None
    except (ModelSettingsError, ConfigFileError, PriceFileError, EmbeddedModelMissing) as error:
        raise click.ClickException(str(error)) from None
    except RunNotFound as error:
        raise click.ClickException(f"no run {error.args[0]!r} in the store") from None
    except CaseRejected as error:
        raise click.ClickException(f"nothing was imported:\n{error}") from None
    except StoreError as error:
        _verbose_traceback()
        raise click.ClickException(str(error)) from None
    except OSError as error:
        if not is_disk_full(error):
            raise
        _verbose_traceback()
        raise click.ClickException(disk_full_message(error)) from None
    except (RunFailed, TooFewCases, RunNotFinished, ResumeError, NothingToCompare, SelectionError,
            CasesInUse, AmbiguousRunId, RegistryError) as error:
        raise click.ClickException(str(error)) from None


def _verbose_traceback() -> None:
    """Under `--verbose`, print the traceback of the error being handled (the default is its one line only)."""
    if current().verbose:
        click.echo(traceback.format_exc().rstrip(), err=True)
