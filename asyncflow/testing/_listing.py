"""The checks of listing: ``list`` sorted across pages and mid-segment prefixes,
``list_children`` (the backend's own when declared, else derived from ``list``),
``list_versions`` (when declared: the keys of ``list`` with tokens that tell writes apart).
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
    "check_list_versions",
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
        own = Capabilities.of(storage).list_versions
        if own is not None:
            versioned = [key async for key, _ in own(f"{ns}/")]
            expect(versioned == keys, f"list_versions listed {len(versioned)} of {len(keys)} keys")
    expect(await listed(storage, f"{ns}/") == [], "keys survived their deletion")


async def _versions(storage: Storage, prefix: str) -> list[tuple[str, str]]:
    own = Capabilities.of(storage).list_versions
    if own is None:
        raise ConfigurationError(f"{storage!r} does not declare list_versions: nothing to check")
    found = [item async for item in own(prefix)]
    for item in found:
        expect(
            isinstance(item, tuple) and len(item) == 2,
            f"list_versions must yield (key, token) pairs, got {item!r}",
        )
        key, token = item
        expect(isinstance(token, str) and token, f"list_versions gave {key} the token {token!r}")
    return found


async def check_list_versions(storage: Storage, options: ConformanceOptions) -> None:
    """``list_versions(prefix)`` yields the keys ``list`` yields, in its order,
    each with a non-empty token; two listings agree while nothing is written;
    a write of other bytes (of the same length too, at once, twice) changes a
    key's token and leaves the others'; a deleted key is gone. A pack is
    trusted only while its records' tokens are the ones it recorded, so a
    token that stayed put across a write would restore a stale record."""
    ns = namespace()
    keys = [f"{ns}/wf/tasks/a.json", f"{ns}/wf/tasks/b.json", f"{ns}/wf/tasks/b2.json"]
    other = f"{ns}/wf-2/run.json"
    async with cleaned_up(storage, [*keys, other]):
        for key in [*keys, other]:
            await storage.write(key, b"one")
        for prefix in (f"{ns}/", f"{ns}/wf/", f"{ns}/wf/tasks/b", f"{ns}/wf", f"{ns}/none/"):
            plain = await listed(storage, prefix)
            versioned = await _versions(storage, prefix)
            expect(
                [key for key, _ in versioned] == plain,
                f"list_versions({prefix!r}) gave {[k for k, _ in versioned]}, list gave {plain}",
            )
        first = dict(await _versions(storage, f"{ns}/"))
        again = dict(await _versions(storage, f"{ns}/"))
        expect(first == again, f"two listings without a write disagree: {first} {again}")
        a, b, b2 = keys
        seen = [first[a]]
        for data in (b"two", b"six"):  # same length, back to back
            await storage.write(a, data)
            now = dict(await _versions(storage, f"{ns}/"))
            expect(
                now[a] != seen[-1], f"{a}: rewritten with other bytes, its token stayed {now[a]!r}"
            )
            seen.append(now[a])
            for key in (b, b2, other):
                expect(now[key] == first[key], f"{key}: a write of {a} changed its token")
        await storage.delete(b)
        after = dict(await _versions(storage, f"{ns}/"))
        expect(b not in after, f"list_versions still yields the deleted {b}")
        expect(after[b2] == first[b2], f"{b2}: deleting {b} changed its token")
        whole = await _versions(storage, "")
        expect([k for k, _ in whole] == sorted(k for k, _ in whole), "list_versions('') unsorted")
        for hostile in ("../", "/", "/etc/", "a//", "..\\"):
            try:
                found = await _versions(storage, hostile)
            except ConfigurationError:
                continue
            expect(found == [], f"list_versions({hostile!r}) yielded {found[:5]}")
