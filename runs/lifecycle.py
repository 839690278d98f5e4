"""One run's life in the store, the same for a search and a check: created with its cases' split, its seed prompt
stored as the first candidate, a heartbeat while it works, and at the end finished (with its report as summary),
failed (with why) or interrupted (resumable)."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from promptopt.runs.heartbeat import Heartbeat
from promptopt.runs.report import run_report
from promptopt.runs.search_writes import SearchWrites
from promptopt.runs.store import Store
from promptopt.runs.writer_lock import hold_writer


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; it is stored as `interrupted` and `run_id` can be resumed."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} interrupted")
        self.run_id = run_id


@dataclass(frozen=True)
class RecordedRun:
    """A run being recorded: its id, its seed candidate's id, and how it ends well (`finish`)."""

    run_id: str
    seed_id: int
    store: Store
    writes: SearchWrites

    def finish(self, winner_id: int) -> dict[str, Any]:
        """Store the winner, then the report and the `finished` status in one write (never finished without its
        report); returns the report."""
        self.writes.update_run(self.run_id, winner_candidate_id=winner_id)
        report = run_report(self.store, self.run_id, status="finished")
        self.writes.update_run(self.run_id, status="finished", summary=report)
        return report


@contextmanager
def recorded_run(store: Store, task: str, strategy: str, config: dict[str, Any], tools: list[Any],
                 splits: dict[int, str], order: Sequence[int], seed_prompt: str,
                 writes: SearchWrites | None = None) -> Iterator[RecordedRun]:
    """Create the run and store its seed prompt (the incumbent and winner until something replaces it), holding
    its writer lock and beating its heartbeat until the block ends. Ctrl-C or SIGTERM in the block stores it
    `interrupted` and raises `RunInterrupted`; any other error stores it `failed` with the error and re-raises.
    `writes` is where the run is written (a resumed run's replay, `ResumedStore`); reads and heartbeats go to
    `store`."""
    writes = writes or store
    run_id = writes.create_run(task, strategy, config, tools, splits, order)
    with hold_writer(store, run_id), Heartbeat(store, run_id):
        try:
            seed_id = writes.add_candidate(run_id, 0, seed_prompt, "seed", status="accepted")
            writes.update_run(run_id, seed_candidate_id=seed_id, winner_candidate_id=seed_id)
            yield RecordedRun(run_id, seed_id, store, writes)
        except KeyboardInterrupt:
            writes.update_run(run_id, status="interrupted", error="interrupted (Ctrl-C or SIGTERM)")
            raise RunInterrupted(run_id) from None
        except BaseException as error:
            writes.update_run(run_id, status="failed", error=f"{type(error).__name__}: {error}")
            raise
