"""``asyncflow clear --older-than AGE``: retention by hand. Called by ``asyncflow.cli``."""

from __future__ import annotations

import anyio
import anyio.to_thread
import click

from asyncflow._core.retention import Pruned, parse_duration, prune
from asyncflow.cli import (
    DEFAULT_STORAGE,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    _reporting,
    _storage,
    _when,
)

__all__ = ["clear_older"]


def _line(item: Pruned) -> str:
    return (
        f"{item.workflow_id}  {item.status}  updated {_when(item.updated_at)}"
        f"  {item.records} record(s)"
    )


def clear_older(
    workflow_id: str | None,
    storage_url: str | None,
    yes: bool,
    force: bool,
    older_than: str | None,
    include_interrupted: bool,
    dry_run: bool,
    debug: bool,
) -> int:
    """Delete every workflow whose latest run ended more than ``older_than`` ago."""
    with _reporting(debug):
        if older_than is None:
            raise CliError("missing ID (or --older-than AGE)", EXIT_USAGE)
        if workflow_id is not None:
            raise CliError("give an ID or --older-than, not both", EXIT_USAGE)
        if force:
            raise CliError(
                "--force does not go with --older-than: a workflow with a live lease"
                " is never deleted by age",
                EXIT_USAGE,
            )
        age = parse_duration(older_than)
        storage = _storage(storage_url)
        where = storage_url or DEFAULT_STORAGE

        async def main() -> tuple[list[Pruned], bool]:
            try:
                found = await prune(
                    storage, age, include_interrupted=include_interrupted, dry_run=True
                )
                if not found or dry_run:
                    return found, False
                for item in found:
                    click.echo(_line(item), err=True)
                if not yes:
                    question = (
                        f"Delete {len(found)} workflow(s) not updated for {older_than} in {where}?"
                    )
                    confirmed = await anyio.to_thread.run_sync(
                        lambda: click.confirm(question, default=False, err=True)
                    )
                    if not confirmed:
                        raise CliError("not confirmed; nothing deleted", EXIT_FAILED)
                deleted = await prune(storage, age, include_interrupted=include_interrupted)
                return deleted, True
            finally:
                await storage.aclose()

        items, deleted = anyio.run(main)
        if not items:
            click.echo(f"no finished workflow older than {older_than} in {where}; nothing to clear")
        elif not deleted:
            for item in items:
                click.echo(_line(item))
            click.echo(f"dry run: would delete {len(items)} workflow(s) from {where}")
        else:
            for item in items:
                click.echo(f"deleted {_line(item)}")
            click.echo(f"deleted {len(items)} workflow(s) older than {older_than} from {where}")
    return EXIT_OK
