"""The layers of DESIGN §8 hold: no import cycle anywhere in ``asyncflow/``.

Imports inside functions count (a lazy import still ties two modules
together); only ``if TYPE_CHECKING:`` blocks are left out. The layer
contracts themselves (``cli/`` and ``ui/`` never import ``_core``, the read
model never reaches the engine) are import-linter's, in pyproject.toml;
this test runs them too, so the README's test command checks the layers.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
#: import-linter's command, installed beside this interpreter by the test extra.
LINT_IMPORTS = str(Path(sys.executable).with_name("lint-imports"))


def _cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.find_modules_directly_imported_by(nxt)))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for name in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(name)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert _cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_no_import_cycle_in_asyncflow() -> None:
    graph = grimp.build_graph("asyncflow", exclude_type_checking_imports=True, cache_dir=None)
    cycles = _cycles(graph)
    assert not cycles, "import cycles (lazy imports count):\n" + "\n".join(map(str, cycles))


def test_the_layer_contracts_are_kept() -> None:
    done = subprocess.run(
        [LINT_IMPORTS, "--no-cache", "--config", str(ROOT / "pyproject.toml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert "Contracts: 5 kept, 0 broken." in done.stdout, done.stdout + done.stderr
    assert done.returncode == 0, done.stdout + done.stderr
