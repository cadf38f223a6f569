"""``asyncflow clear``: delete one workflow's records, or (``--older-than``) every old one."""

from __future__ import annotations

import anyio
import anyio.to_thread
import click

from asyncflow import Pruned, prune
from asyncflow import clear as clear_workflow
from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    debug_option,
    open_storage,
    reporting,
    storage_option,
    validated_id,
    when,
)
from asyncflow.cli._common import storage_url as url_of
from asyncflow.reading import close_matches, parse_duration, workflow_ids

__all__ = ["clear"]


@cli.command()
@click.argument("workflow_id", metavar="[ID]", required=False)
@storage_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option("--force", is_flag=True, help="Clear even while a runner holds the lease.")
@click.option(
    "--older-than",
    metavar="AGE",
    help="Instead of ID: every finished workflow not updated for AGE (7d, 12h, 30m).",
)
@click.option("--include-interrupted", is_flag=True, help="With --older-than: also crashed runs.")
@click.option("--dry-run", is_flag=True, help="With --older-than: list, delete nothing.")
@debug_option
def clear(
    workflow_id: str | None,
    storage_url: str | None,
    yes: bool,
    force: bool,
    older_than: str | None,
    include_interrupted: bool,
    dry_run: bool,
    debug: bool,
) -> int:
    """Delete a workflow's run manifest and checkpoints.

    Takes the workflow's lease first, so no runner can start meanwhile; a live
    lease makes it refuse unless --force. With --older-than instead of ID:
    every workflow whose run ended before that age (never one with a live lease).
    """
    if older_than is not None or workflow_id is None:
        return clear_older(
            workflow_id, storage_url, yes, force, older_than, include_interrupted, dry_run, debug
        )
    if include_interrupted or dry_run:
        raise CliError("--include-interrupted and --dry-run go with --older-than", EXIT_USAGE)
    with reporting(debug):
        workflow_id = validated_id(workflow_id)
        storage = open_storage(storage_url)
        where = url_of(storage_url)

        known: list[str] = []
        children: list[str] = []

        async def main() -> int:
            try:
                plan = await clear_workflow(storage, workflow_id, dry_run=True)
                if plan is None:
                    known.extend(w for w in await workflow_ids(storage) if w != workflow_id)
                    return -1
                children.extend(plan.children)
                if not yes:
                    question = (
                        f"Delete {plan.records} record(s) of workflow {workflow_id}"
                        f"{_with_children(children)} in {where}?"
                    )
                    confirmed = await anyio.to_thread.run_sync(
                        lambda: click.confirm(question, default=False, err=True)
                    )
                    if not confirmed:
                        raise CliError("not confirmed; nothing deleted", EXIT_FAILED)
                done = await clear_workflow(storage, workflow_id, force=force)
                return done.records if done is not None else 0
            finally:
                await storage.aclose()

        deleted = anyio.run(main)
        if deleted < 0:
            hint = close_matches(workflow_id, known)
            click.echo(f"no workflow {workflow_id} in {where} (no run.json); nothing deleted{hint}")
        else:
            click.echo(
                f"workflow {workflow_id}{_with_children(children)}:"
                f" deleted {deleted} record(s) from {where}"
            )
    return EXIT_OK


def _with_children(children: list[str]) -> str:
    if not children:
        return ""
    return f" and its child flow(s) {', '.join(children)}"


def _line(item: Pruned) -> str:
    return (
        f"{item.workflow_id}  {item.status}  updated {when(item.updated_at)}"
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
    with reporting(debug):
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
        storage = open_storage(storage_url)
        where = url_of(storage_url)

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
