"""``asyncflow reset`` and ``asyncflow fork``: steer a workflow from its records."""

from __future__ import annotations

import os

import anyio
import click

from asyncflow import fork as fork_workflow
from asyncflow import reset as reset_workflow
from asyncflow.cli._app import cli
from asyncflow.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    debug_option,
    open_storage,
    reporting,
    storage_option,
    unknown_workflow,
    validated_id,
)
from asyncflow.cli._common import storage_url as url_of
from asyncflow.providers import Storage
from asyncflow.reading import read_manifest, workflow_ids

__all__ = ["fork", "reset"]


async def _known(storage: Storage, workflow_id: str) -> list[str] | None:
    """None if ``workflow_id`` has a run.json, else the ids there are (for 'did you mean')."""
    if await read_manifest(storage, workflow_id) is not None:
        return None
    return await workflow_ids(storage)


@cli.command()
@click.argument("workflow_id", metavar="ID")
@click.option("--from", "from_key", required=True, metavar="KEY", help="The first task to re-run.")
@storage_option
@debug_option
def reset(workflow_id: str, from_key: str, storage_url: str | None, debug: bool) -> int:
    """Make the next resume of ID re-run task KEY and every task that depends on it.

    Deletes those tasks' checkpoints while holding the workflow's lease (a
    live runner makes it refuse). The flow's shape comes from run.json.
    """
    with reporting(debug):
        workflow_id = validated_id(workflow_id)
        storage = open_storage(storage_url)

        async def main() -> tuple[list[str] | None, list[str]]:
            try:
                known = await _known(storage, workflow_id)
                if known is not None:
                    return known, []
                return None, await reset_workflow(storage, workflow_id, from_key)
            finally:
                await storage.aclose()

        known, done = anyio.run(main)
        if known is not None:
            raise unknown_workflow(workflow_id, known, url_of(storage_url))
        click.echo(
            f"workflow {workflow_id}: reset {len(done)} task(s): {', '.join(done)};"
            " the next resume re-runs them"
        )
    return EXIT_OK


@cli.command()
@click.argument("workflow_id", metavar="ID")
@click.argument("new_id", metavar="NEW_ID")
@click.option("--from", "from_key", metavar="KEY", help="Copy only the tasks before KEY.")
@click.option(
    "--signing-key-env",
    metavar="VAR",
    help="For signed records: the environment variable holding the signing key.",
)
@storage_option
@debug_option
def fork(
    workflow_id: str,
    new_id: str,
    from_key: str | None,
    signing_key_env: str | None,
    storage_url: str | None,
    debug: bool,
) -> int:
    """Make NEW_ID a new workflow with ID's checkpoints (before KEY with --from).

    Resume NEW_ID (asyncflow run FILE.py --workflow-id NEW_ID --resume) to
    run the rest. Signed records are verified and re-signed with the key
    read from --signing-key-env (a key is never taken on the command line).
    """
    with reporting(debug):
        workflow_id = validated_id(workflow_id)
        new_id = validated_id(new_id)
        key: bytes | None = None
        if signing_key_env is not None:
            value = os.environ.get(signing_key_env)
            if not value:
                raise CliError(f"environment variable {signing_key_env} is not set", EXIT_USAGE)
            key = value.encode()
        storage = open_storage(storage_url)

        async def main() -> tuple[list[str] | None, list[str]]:
            try:
                known = await _known(storage, workflow_id)
                if known is not None:
                    return known, []
                return None, await fork_workflow(
                    storage, workflow_id, new_id, from_key=from_key, signing_key=key
                )
            finally:
                await storage.aclose()

        known, done = anyio.run(main)
        if known is not None:
            raise unknown_workflow(workflow_id, known, url_of(storage_url))
        copied = ", ".join(done) or "none"
        click.echo(
            f"workflow {new_id}: forked from {workflow_id} with {len(done)} checkpoint(s)"
            f" ({copied}); resume {new_id} to run the rest"
        )
    return EXIT_OK
