"""`promptopt cache stats|clear`: the on-disk response cache ($PROMPTOPT_CACHE_DIR), seen and emptied."""
from __future__ import annotations

import time

import click

from promptopt.config import response_cache_dir
from promptopt.models.response_cache import cache_stats, clear_cache, max_cache_bytes


@click.group()
def cache() -> None:
    """The response cache: model replies by request, so a re-run calls no model again."""


@cache.command("stats")
def stats() -> None:
    """Where the cache is, how many replies it holds, their size against the cap, and their age."""
    folder = response_cache_dir()
    found = cache_stats(folder)
    click.echo(f"{folder}: {found.entries} replies, {found.bytes / 2**20:.1f} MB of "
               f"{max_cache_bytes() / 2**20:.0f} MB ($PROMPTOPT_CACHE_MAX_MB)")
    if found.entries:
        click.echo(f"oldest {_age(found.oldest)} old, newest {_age(found.newest)} old")


@cache.command("clear")
@click.option("--older-than", "days", type=click.FloatRange(0, min_open=True), default=None, metavar="DAYS",
              help="Only replies written more than DAYS days ago.")
@click.option("--yes", is_flag=True, help="Clear without asking.")
def clear(days, yes) -> None:
    """Remove cached replies (all, or the old ones): the next runs ask the model again. Do this when the model
    behind a name and URL changed, since the cache cannot tell."""
    folder = response_cache_dir()
    if not yes:
        which = f"replies older than {days:g} days" if days else "every cached reply"
        click.confirm(f"remove {which} from {folder}?", abort=True, err=True)
    removed = clear_cache(folder, None if days is None else days * 86400)
    click.echo(f"removed {removed} cached replies")


def _age(moment: float | None) -> str:
    seconds = max(0.0, time.time() - (moment or time.time()))
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} seconds"
