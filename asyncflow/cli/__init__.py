"""The ``asyncflow`` command: run a flow with a progress bar, inspect or clear a workflow.

::

    asyncflow run FILE.py[:ATTR] [--workflow-id ID] [--resume] [--mode M] [--storage URL]
                                 [--max-concurrency N] [--from KEY] [--keep-going] [--park]
                                 [--debug]
    asyncflow list [--status S] [--since AGE] [--format table|json] [--storage URL]
    asyncflow status ID [--run RUN_ID] [--storage URL] [--format table|json|mermaid]
    asyncflow reset ID --from KEY [--storage URL]
    asyncflow fork ID NEW_ID [--from KEY] [--signing-key-env VAR] [--storage URL]
    asyncflow clear ID [--storage URL] [--yes] [--force]
    asyncflow clear --older-than AGE [--dry-run] [--include-interrupted]
    asyncflow schedule FILE.py[:ATTR] --cron EXPR ...
    asyncflow signal ID NAME [--data JSON] [--storage URL]
    asyncflow worker FILE.py[:ATTR] [--concurrency N] [--prefix P] [--once] [--storage URL]
    asyncflow ui [--storage URL] [--host 127.0.0.1] [--port 8321] [--actions] [--token T]

Exit codes: 0 success (the run completed), 1 the run failed or was cancelled,
or the command could not do its job (workflow not found, locked, storage
error), 2 a usage or configuration error. Every error is one line on stderr
(``error: ...``); ``--debug`` adds the traceback. See ``docs/cli.md``.

One module per command group; what they share is in ``_common`` (errors,
options, output helpers) and ``_target`` (loading ``FILE.py[:ATTR]``), and
the group itself in ``_app``. Importing this package registers every command.

Needs the ``cli`` extra (click and rich); the core package never imports it.
"""

from __future__ import annotations

try:
    import click  # noqa: F401
    import rich.console
    import rich.progress
    import rich.table  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised in a subprocess
    raise ImportError(
        f"the asyncflow command line needs its extra ({exc.name} is missing):"
        " pip install 'asyncflow-durable[cli]'"
    ) from exc

from asyncflow.cli import (  # noqa: F401  (register the commands)
    clear,
    list,
    run,
    schedule,
    signal,
    status,
    steer,
    ui,
    worker,
)
from asyncflow.cli._app import cli, main

__all__ = ["cli", "main"]

main.__module__ = __name__  # named after the public module, not ``_app``
