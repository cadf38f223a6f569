"""Writing ``run.json``: the one place that does, so what goes with it goes with it.

Every writer of a workflow's ``run.json`` (a run starting and ending, a
reset, a fork, a submitted or cancelled run) calls ``write_manifest`` with
the manifest it replaces, when it knows it. Live progress updates, which
never change a run's status, go through it too.
"""

from __future__ import annotations

from asyncflow._kernel.layout import manifest_key
from asyncflow._kernel.manifest import Manifest
from asyncflow._kernel.storage import Storage

__all__ = ["write_manifest"]


async def write_manifest(
    storage: Storage,
    manifest: Manifest,
    *,
    previous: Manifest | None = None,
    if_absent: bool = False,
    if_version: str | None = None,
) -> str:
    """Write ``manifest`` as its workflow's ``run.json``; returns the new version.

    ``previous``: the ``run.json`` this one replaces, when the caller read
    it. ``if_absent`` / ``if_version`` make the write conditional
    (``PreconditionFailed`` otherwise), as ``Storage.write``.
    """
    del previous  # the workflow index (issue 27) keys on it
    return await storage.write(
        manifest_key(manifest.workflow_id),
        manifest.encode(),
        if_absent=if_absent,
        if_version=if_version,
    )
