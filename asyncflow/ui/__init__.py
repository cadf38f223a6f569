"""The run viewer: a web page over a storage, showing every workflow and run.

::

    from asyncflow.providers import StorageFile
    from asyncflow.ui import create_app

    app = create_app(StorageFile(".asyncflow"))   # an ASGI app: mount it anywhere

``asyncflow ui`` serves the same app with uvicorn. Needs the ``ui`` extra
(starlette, jinja2, uvicorn); the core package never imports it. See
``docs/ui.md``.
"""

from __future__ import annotations

try:
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        f"the asyncflow run viewer needs its extra ({exc.name} is missing):"
        " pip install 'asyncflow-durable[ui]'"
    ) from exc

from asyncflow.ui._app import create_app

__all__ = ["create_app"]

create_app.__module__ = __name__  # named after the public module, not ``_app``
