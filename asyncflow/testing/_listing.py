"""The checks of listing: ``list`` sorted across pages and mid-segment prefixes,
``list_children`` (the backend's own when declared, else derived from ``list``).
"""

from __future__ import annotations

import functools

from asyncflow._kernel.capabilities import Capabilities, list_children
from asyncflow._kernel.errors import ConfigurationError
from asyncflow._kernel.storage import Storage
from asyncflow.testing._support import (
    ConformanceOptions,
    bounded,
    cleaned_up,
    expect,
    listed,
    namespace,
)

__all__ = [
    "check_list_children",
    "check_listing",
    "check_many_keys",
]


async def check_listing(storage: Storage, options: ConformanceOptions) -> None:
    """``list`` yields every key under a prefix, sorted, relative to the
    storage root, including prefixes that end mid-segment (``wf/a``)."""
    ns = namespace()
    keys = [
        f"{ns}/wf/run.json",
        f"{ns}/wf/tasks/0.json",
        f"{ns}/wf/tasks/1.json",
        f"{ns}/wf/tasks/10.json",
        f"{ns}/wf/tasks/2.json",
        f"{ns}/wf-2/run.json",
        f"{ns}/wf.b/run.json",
        f"{ns}/wfx.json",
    ]
    async with cleaned_up(storage, keys):
        for key in keys:
            await storage.write(key, b"x")
        everything = await listed(storage, f"{ns}/")
        expect(everything == sorted(keys), f"list({ns}/) gave {everything}")
        wf = await listed(storage, f"{ns}/wf/")
        expect(wf == sorted(k for k in keys if "/wf/" in k), f"list({ns}/wf/) gave {wf}")
        tasks_1 = await listed(storage, f"{ns}/wf/tasks/1")
        expect(
            tasks_1 == [f"{ns}/wf/tasks/1.json", f"{ns}/wf/tasks/10.json"],
            f"list({ns}/wf/tasks/1) gave {tasks_1}",
        )
        not_on_boundary = await listed(storage, f"{ns}/wf")
        expect(not_on_boundary == sorted(keys), f"list({ns}/wf) gave {not_on_boundary}")
        dash = await listed(storage, f"{ns}/wf-")
        expect(dash == [f"{ns}/wf-2/run.json"], f"list({ns}/wf-) gave {dash}")
        expect(await listed(storage, f"{ns}/nothing/") == [], "an empty prefix listed keys")
        expect(await listed(storage, f"{ns}-none") == [], "a foreign prefix listed keys")
        whole = await listed(storage, "")
        expect(whole == sorted(whole), "list('') is not sorted")
        expect(set(keys) <= set(whole), "list('') misses keys")


async def check_list_children(storage: Storage, options: ConformanceOptions) -> None:
    """``list_children(prefix)`` (the backend's own when declared, derived from
    ``list`` otherwise) yields each next path segment once, sorted: ``name/``
    for a folder, ``name`` for a key right under the prefix; this is how
    ``asyncflow list`` finds workflow ids without reading every record. A
    prefix that is neither ``""`` nor ends with ``/`` is refused with
    ``ConfigurationError`` by the backend's own method too."""
    ns = namespace()
    keys = [
        f"{ns}/wf/run.json",
        f"{ns}/wf/tasks/0.json",
        f"{ns}/wf/tasks/1.json",
        f"{ns}/wf-2/run.json",
        f"{ns}/wf.b/run.json",
        f"{ns}/wfx.json",
    ]
    async with cleaned_up(storage, keys):
        for key in keys:
            await storage.write(key, b"x")
        top = [s async for s in list_children(storage, f"{ns}/")]
        expected = ["wf-2/", "wf.b/", "wf/", "wfx.json"]
        expect(top == expected, f"list_children({ns}/) gave {top}, expected {expected}")
        inner = [s async for s in list_children(storage, f"{ns}/wf/")]
        expect(inner == ["run.json", "tasks/"], f"list_children({ns}/wf/) gave {inner}")
        none = [s async for s in list_children(storage, f"{ns}/nothing/")]
        expect(none == [], f"list_children of an empty prefix gave {none}")
        root = [s async for s in list_children(storage, "")]
        expect(f"{ns}/" in root, f"list_children('') misses {ns}/")
        expect(root == sorted(set(root)), "list_children('') is not sorted and unique")
        await _own_prefix_checks(storage, ns)


async def _own_prefix_checks(storage: Storage, ns: str) -> None:
    """The backend's own ``list_children``, called directly, checks its prefix itself:
    the helper above checks it first, so only a direct call shows that it does."""
    own = Capabilities.of(storage).list_children
    if own is None:
        return
    for bad in (f"{ns}/wf", "wf", f"{ns}/wf/run.json"):
        try:
            found = [s async for s in own(bad)]
        except ConfigurationError:
            continue
        raise AssertionError(f"list_children({bad!r}) gave {found[:5]}, not ConfigurationError")
    for hostile in ("../", "/", "/etc/", "a//", "..\\/"):
        try:
            found = [s async for s in own(hostile)]
        except ConfigurationError:
            continue
        expect(found == [], f"list_children({hostile!r}) yielded {found[:5]}")


async def check_many_keys(storage: Storage, options: ConformanceOptions) -> None:
    """Listing returns every key when there are more than fit on one page
    (S3 and GCS answer 1000 per page): resume must not miss a checkpoint."""
    ns = namespace()
    keys = [f"{ns}/tasks/{i:05d}.json" for i in range(options.many_keys)]
    async with cleaned_up(storage, keys, options.concurrency):
        await bounded(
            options.concurrency,
            [functools.partial(storage.write, k, b"{}") for k in keys],
        )
        found = await listed(storage, f"{ns}/")
        expect(len(found) == len(keys), f"listed {len(found)} of {len(keys)} keys")
        expect(found == keys, "listing differs from what was written (order or content)")
    expect(await listed(storage, f"{ns}/") == [], "keys survived their deletion")
