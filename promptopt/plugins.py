"""Plugins: the entry points installed packages register for promptopt's registries (evaluators, model
backends, strategies), found one way, with one warning for a plugin that takes a name already in use."""
from __future__ import annotations

import warnings
from importlib import metadata
from typing import Mapping


def plugin_entry_points(group: str, kind: str, taken: Mapping[str, str]) -> list[tuple[metadata.EntryPoint, str]]:
    """The entry points of `group`, by name, each with its source (`distribution version`). One whose name is in
    `taken` (name -> who has it) is left out with a warning naming both, so its author learns why it never runs."""
    found = []
    for entry in sorted(metadata.entry_points(group=group), key=lambda e: e.name):
        dist = getattr(entry, "dist", None)
        source = f"{dist.metadata['Name']} {dist.version}" if dist is not None else entry.value
        if entry.name in taken:
            warnings.warn(f"{kind} {entry.name!r} from {source} ({entry.value}) is ignored: {taken[entry.name]} "
                          "already has that name; register it under another name", stacklevel=3)
            continue
        found.append((entry, source))
    return found
