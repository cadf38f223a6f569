"""Helpers for testing asyncflow backends and flows in your own test suite.

``asyncflow.testing`` is never imported by asyncflow itself, and it does not
import pytest: the checks are plain coroutines, and ``StorageConformance`` is
a pytest mix-in that only needs pytest when your test suite collects it.
"""

from __future__ import annotations

from asyncflow._kernel.public import publish
from asyncflow.testing.conformance import (
    CHECKS,
    HOSTILE_KEYS,
    REQUIRES,
    ConformanceOptions,
    StorageConformance,
    applicable,
    run_conformance,
)

__all__ = [
    "CHECKS",
    "HOSTILE_KEYS",
    "REQUIRES",
    "ConformanceOptions",
    "StorageConformance",
    "applicable",
    "run_conformance",
]

publish(__name__, globals())
