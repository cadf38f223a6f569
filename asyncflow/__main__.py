"""``python -m asyncflow``: the ``asyncflow`` command (needs the ``cli`` extra)."""

from __future__ import annotations

import sys

try:
    from asyncflow.cli import main
except ImportError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)

main()
