"""Constructor arguments of the cloud backends, checked when the backend is built.

An argument the SDK would refuse must fail at ``StorageS3(...)``, naming
itself, and not at the first ``await flow.start()``. Dotflow's own arguments
are taken where they mean the same thing (``region=`` is botocore's
``region_name``) and refused with what to do instead where they do not.
"""

from __future__ import annotations

import inspect
from typing import Any

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["refuse_gcs_project", "s3_client_options"]


def _create_client_options() -> tuple[str, ...]:
    from botocore.session import Session  # type: ignore[import-untyped]

    names = list(inspect.signature(Session.create_client).parameters)
    return tuple(name for name in names if name not in ("self", "service_name"))


def s3_client_options(given: dict[str, Any]) -> dict[str, Any]:
    """The options for ``session.create_client("s3", ...)``; ``region`` becomes ``region_name``."""
    options = dict(given)
    if "region" in options:
        if "region_name" in options:
            raise ConfigurationError("StorageS3: pass region= or region_name=, not both")
        options["region_name"] = options.pop("region")
    known = _create_client_options()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigurationError(
            f"StorageS3 got {', '.join(f'{name}=' for name in unknown)}, which botocore's"
            f" create_client does not take; its options are {', '.join(known)}"
            " (and region=, Dotflow's name for region_name=)"
        )
    return options


def refuse_gcs_project(project: object) -> None:
    """Dotflow's ``StorageGCS(project=...)`` has nothing to do here: say so at once."""
    if project is not None:
        raise ConfigurationError(
            f"StorageGCS takes no project= (got {project!r}): reading and writing objects"
            " in a bucket needs no project (gcloud-aio-storage uses one only to list"
            " buckets); drop it. Credentials come from service_file=, token= or the"
            " usual chain (GOOGLE_APPLICATION_CREDENTIALS, gcloud's default credentials)"
        )
