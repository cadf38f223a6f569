"""Every Python code block in README.md and docs/**/*.md runs, so the docs cannot rot.

Convention (also stated in docs/index.md):

- a block fenced with ```` ```python ```` (or ``py``/``python3``) is run as a
  script, on its own, in a fresh empty temporary folder as the current
  directory, with ``__name__ == "__main__"``; it must not depend on another
  block. Top-level ``await`` is allowed (as in a notebook): such a block runs
  under ``anyio.run``. An exception, or a failed ``assert`` in the block,
  fails the test;
- a block that cannot run here (it needs real cloud credentials, say) is
  preceded by the comment ``<!-- no-test: why -->`` on the line above the
  fence. Keep them rare: this test caps their number.
"""

from __future__ import annotations

import ast
import inspect
import logging
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

ROOT = Path(__file__).parent.parent
SOURCES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
NO_TEST = re.compile(r"^\s*<!--\s*no-test:\s*\S.*-->\s*$")
LANGUAGES = {"python", "py", "python3"}
MAX_NO_TEST = 6


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    code: str
    skipped: bool

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def blocks_of(path: Path) -> list[Block]:
    lines = path.read_text(encoding="utf-8").splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, start = match["fence"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and not (
            lines[i].strip().startswith(fence) and lines[i].strip().strip(fence[0]) == ""
        ):
            body.append(lines[i][len(match["indent"]) :])
            i += 1
        i += 1
        if match["info"].lower() in LANGUAGES:
            skipped = start > 0 and bool(NO_TEST.match(lines[start - 1]))
            found.append(Block(path, start + 1, "\n".join(body) + "\n", skipped))
    return found


BLOCKS = [block for path in SOURCES for block in blocks_of(path)]


def run_block(block: Block) -> None:
    """exec the block like a script; with top-level await, inside ``anyio.run``."""
    code = compile(
        block.code, str(block.path), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )
    namespace = {"__name__": "__main__", "__file__": str(block.path)}
    # Line numbers in tracebacks point into the .md file.
    code = code.replace(co_firstlineno=block.line + 1)
    if code.co_flags & inspect.CO_COROUTINE:

        async def main() -> None:
            await eval(code, namespace)

        anyio.run(main)
    else:
        exec(code, namespace)


@pytest.mark.parametrize("block", [b for b in BLOCKS if not b.skipped], ids=lambda b: b.name)
def test_code_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(block.path)])
    monkeypatch.syspath_prepend(str(tmp_path))
    # A block may configure logging, as a script would; undo it for the next tests.
    root, ours = logging.getLogger(), logging.getLogger("asyncflow")
    saved = (root.level, root.handlers[:], ours.level)
    try:
        run_block(block)
    except SystemExit as exit_:  # a script's sys.exit(0) is a success
        if exit_.code not in (0, None):
            pytest.fail(f"{block.name} exited with {exit_.code!r}")
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        ours.setLevel(saved[2])


def test_the_docs_have_code_and_few_blocks_are_exempt() -> None:
    names = {block.path.name for block in BLOCKS}
    assert {"README.md", "tutorial.md", "modes.md", "index.md"} <= names
    skipped = [block.name for block in BLOCKS if block.skipped]
    assert len(skipped) <= MAX_NO_TEST, skipped


def test_the_extractor_finds_blocks_and_the_exemption_marker(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- no-test: needs AWS -->\n```python\nboom()\n```\n"
        "\n```bash\nls\n```\n\n- item\n\n    ```py\n    y = 2\n    ```\n"
    )
    found = blocks_of(page)
    assert [(b.line, b.code, b.skipped) for b in found] == [
        (3, "x = 1\n", False),
        (8, "boom()\n", True),
        (18, "y = 2\n", False),
    ]
