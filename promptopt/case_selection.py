"""Which stored cases a run, a check or an export takes: by source (the log turn or the file a case came from),
tag and label. Each kind given narrows the selection; several values of one kind widen it (any of them)."""
from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import PurePath
from typing import Iterable

from promptopt.case import LABELS, Case


class SelectionError(ValueError):
    """A selection that cannot be made (an unknown label) or that matches no stored case."""


@dataclass(frozen=True)
class CaseSelection:
    """`sources`: glob patterns matched against a case's `source` (a log turn's is `FILE:RECORD#TURN`, so the bare
    file name matches every turn of that log) and against the file it was first imported from (its path or
    name); `tags`: any of them; `labels`: bad / good."""

    sources: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        unknown = sorted(set(self.labels) - set(LABELS))
        if unknown:
            raise SelectionError(f"unknown label {unknown[0]!r}: a case is labelled {' or '.join(LABELS)}")

    @classmethod
    def of(cls, sources: Iterable[str] | None = None, tags: Iterable[str] | None = None,
           labels: Iterable[str] | None = None) -> "CaseSelection":
        return cls(tuple(sources or ()), tuple(tags or ()), tuple(labels or ()))

    def __bool__(self) -> bool:
        return bool(self.sources or self.tags or self.labels)

    def matches(self, case: Case, imported_from: str = "") -> bool:
        """Whether `case` (first imported from the files `imported_from` names, comma-separated) is selected."""
        if self.labels and case.label not in self.labels:
            return False
        if self.tags and not set(self.tags) & set(case.tags):
            return False
        if self.sources:
            names = [case.source, case.source.split(":", 1)[0]]
            for path in filter(None, (part.strip() for part in imported_from.split(", "))):
                names += [path, PurePath(path).name]
            return any(fnmatchcase(name, pattern) for name in names if name for pattern in self.sources)
        return True

    def describe(self) -> str:
        """The selection as the flags that make it."""
        return " ".join([*(f"--source {s}" for s in self.sources), *(f"--tag {t}" for t in self.tags),
                         *(f"--label {label}" for label in self.labels)])
