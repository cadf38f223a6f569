"""A step's code hash: the block it hashes, its stability, its schemes, edits after import."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from asyncflow import AsyncFlow, CheckpointMismatch, Config, action
from asyncflow._core import code_hash as code_hash_module
from asyncflow._core.code_hash import SOURCE_SCHEME, code_hash, comparable
from asyncflow.providers import StorageFile

CODE_HASH_PY = Path(code_hash_module.__file__)

# Every shape of definition the block scan must cut as the tokenizer does.
SAMPLE = textwrap.dedent(
    '''
    import functools


    def deco(f):
        @functools.wraps(f)
        def inner(*a, **k):
            return f(*a, **k)

        return inner


    def plain(x):
        return x + 1


    @deco
    @deco
    def decorated(x):
        """Doc."""
        return x


    @functools.lru_cache(
        maxsize=None,
    )
    def signature(
        a: int,
        b: int = 2,
    ) -> int:
        return a + b


    async def coroutine(previous_context=None):
        return 1


    def docstring_at_column_zero():
        """First line.
    Dedented line.
    """
        return 2


    def sql_string():
        query = """
    SELECT 1
    """
        return query


    def trailing_string():
        return """
    tail
    """


    def comment_at_column_zero():
        x = 1
    # a comment at column 0 inside the body
        return x
    # a trailing comment is not part of it


    def one_liner(): return 3


    def backslash():
        total = 1 + \\
    2
        return total


    def unbalanced_in_a_string():
        return "(" + "["


    def outer():
        def nested(y):
            return y

        return nested


    class Step:
        """A class step."""

        def method(self):
            return 4


    @functools.total_ordering
    class Ordered:
        def __lt__(self, other):
            return False

        def __eq__(self, other):
            return True


    lam = (lambda c:
           c)


    def after():
        return 5
    '''
)

NAMES = [
    "plain",
    "decorated",
    "signature",
    "coroutine",
    "docstring_at_column_zero",
    "sql_string",
    "trailing_string",
    "comment_at_column_zero",
    "one_liner",
    "backslash",
    "unbalanced_in_a_string",
    "outer",
    "Step",
    "Step.method",
    "Ordered",
    "lam",
    "after",
]

HASHES_SCRIPT = """
import importlib.util, json, sys
spec = importlib.util.spec_from_file_location("code_hash_under_test", sys.argv[1])
hashing = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hashing)
sys.path.insert(0, sys.argv[2])
module = __import__(sys.argv[3])
found = {}
for name in sys.argv[4:]:
    target = module
    for part in name.split("."):
        target = getattr(target, part)
    found[name] = hashing.code_hash(target, name)
print(json.dumps(found))
"""


@pytest.fixture
def modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on ``sys.path`` for modules written by a test, without bytecode caches."""
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_module(directory: Path, name: str, source: str) -> ModuleType:
    (directory / f"{name}.py").write_text(source)
    importlib.invalidate_caches()
    return importlib.import_module(name)


def attribute(module: ModuleType, name: str) -> Any:
    target: Any = module
    for part in name.split("."):
        target = getattr(target, part)
    return target


def source_hash(text: str) -> str:
    return f"{SOURCE_SCHEME}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def hashes_in(python: str, directory: Path, module: str) -> dict[str, str]:
    """The sample's hashes computed by ``python``, which loads only ``code_hash.py``."""
    done = subprocess.run(
        [python, "-c", HASHES_SCRIPT, str(CODE_HASH_PY), str(directory), module, *NAMES],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result: dict[str, str] = json.loads(done.stdout)
    return result


def test_each_block_is_what_the_tokenizer_cuts(modules: Path) -> None:
    sample = write_module(modules, "sample_blocks", SAMPLE)
    for name in NAMES:
        target = attribute(sample, name)
        expected = inspect.getsource(target)
        expected += "" if expected.endswith("\n") else "\n"
        assert code_hash(target, name) == source_hash(expected), name
    assert "trailing comment" not in inspect.getsource(sample.comment_at_column_zero)


def test_the_hash_of_a_wrapped_step_is_its_inner_function(modules: Path) -> None:
    sample = write_module(modules, "sample_wrapped", SAMPLE)
    assert code_hash(sample.decorated, "decorated") == source_hash(
        '@deco\n@deco\ndef decorated(x):\n    """Doc."""\n    return x\n'
    )


def test_a_changed_step_changes_its_hash_and_only_its_own(modules: Path) -> None:
    sample = write_module(modules, "sample_changed", SAMPLE)
    before = {name: code_hash(attribute(sample, name), name) for name in NAMES}
    (modules / "sample_changed.py").write_text(SAMPLE.replace("return x + 1", "return x + 2"))
    importlib.reload(sample)
    after = {name: code_hash(attribute(sample, name), name) for name in NAMES}
    assert [name for name in NAMES if before[name] != after[name]] == ["plain"]


def test_unchanged_source_hashes_the_same_in_a_new_process(modules: Path) -> None:
    sample = write_module(modules, "sample_process", SAMPLE)
    here = {name: code_hash(attribute(sample, name), name) for name in NAMES}
    assert all(value.startswith(f"{SOURCE_SCHEME}:") for value in here.values())
    assert hashes_in(sys.executable, modules, "sample_process") == here


def other_pythons() -> list[str]:
    """Other CPython 3.10+ interpreters on this machine (pyenv's, or on PATH)."""
    found: dict[str, str] = {}
    roots = [Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"]
    for root in roots:
        for python in sorted(root.glob("3.*/bin/python3")):
            version = python.parent.parent.name
            if re.fullmatch(r"3\.(1\d|[2-9]\d)\.\d+", version):
                found.setdefault(version.rsplit(".", 1)[0], str(python))
    this = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return [python for version, python in sorted(found.items()) if version != this]


def test_unchanged_source_hashes_the_same_on_other_python_versions(modules: Path) -> None:
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no other CPython 3.10+ interpreter on this machine")
    sample = write_module(modules, "sample_versions", SAMPLE)
    here = {name: code_hash(attribute(sample, name), name) for name in NAMES}
    for python in pythons:
        assert hashes_in(python, modules, "sample_versions") == here, python


def test_schemes_compare_only_with_themselves() -> None:
    assert comparable("s2:0123456789abcdef", "s2:fedcba9876543210")
    assert not comparable("0123456789abcdef", "s2:0123456789abcdef")  # the first scheme
    assert not comparable("b2-3.11:0123456789abcdef", "b2-3.12:0123456789abcdef")
    assert not comparable("b2-3.11:0123456789abcdef", "s2:0123456789abcdef")


def test_an_edit_after_the_import_that_moves_the_step_hashes_its_bytecode(modules: Path) -> None:
    sample = write_module(modules, "sample_moved", SAMPLE)
    (modules / "sample_moved.py").write_text("def added():\n    pass\n\n" + SAMPLE)
    got = code_hash(sample.plain, "plain")  # not the lines now at the step's old place
    assert got.startswith(f"b2-{sys.version_info[0]}.{sys.version_info[1]}:")
    assert got == code_hash(sample.plain, "plain")


def test_a_module_is_read_once_per_import_not_per_step(modules: Path) -> None:
    sample = write_module(modules, "sample_once", SAMPLE)
    code_hash(sample.plain, "plain")
    (modules / "sample_once.py").write_text(SAMPLE.replace("return 5", "return 6"))
    # The code running is still the imported one: so is the source hashed.
    assert code_hash(sample.after, "after") == source_hash("def after():\n    return 5\n")
    importlib.reload(sample)
    assert code_hash(sample.after, "after") == source_hash("def after():\n    return 6\n")


def test_a_decorator_line_in_a_string_does_not_make_the_scan_backtrack(modules: Path) -> None:
    """Lines that look like a decorator and its body, with no ``def``: no exponential retries."""
    body = "    # a comment line\n    a line of code(1, 2)\n" * 30
    looks_like = "@decorator\n" + body + "not_a_definition = 1\n"
    source = f'TEXT = """\n{looks_like}"""\n\n\ndef step():\n    return TEXT\n'
    sample = write_module(modules, "sample_lookalike", source)
    assert code_hash(sample.step, "step") == source_hash("def step():\n    return TEXT\n")


def test_a_builtin_step_hashes_its_name() -> None:
    assert code_hash(len, "len") == code_hash(len, "len")
    assert code_hash(len, "len").startswith("n2:")


# -- resume: what on_code_change sees ------------------------------------------------------

STEPS = textwrap.dedent(
    """
    CALLS = []


    def first():
        CALLS.append("first")
        return 1


    def second(previous_context):
        CALLS.append("second")
        return 2
    """
)

RESUME = textwrap.dedent(
    """
    import json, logging, sys
    import anyio
    from asyncflow import AsyncFlow, Config, action
    from asyncflow.providers import StorageFile

    sys.path.insert(0, sys.argv[1])
    import code_steps

    async def main():
        flow = AsyncFlow(config=Config(storage=StorageFile(sys.argv[2])), workflow_id="code")
        flow.task.add(action(code_steps.first), key="a")
        flow.task.add(action(code_steps.second), key="b")
        await flow.start(resume=True, on_code_change=sys.argv[3])
        print(json.dumps(code_steps.CALLS))

    logging.basicConfig(level=logging.WARNING)
    anyio.run(main)
    """
)


def resume_in_a_new_process(tmp_path: Path, policy: str) -> tuple[list[str], str]:
    script = tmp_path / "resume_code.py"
    script.write_text(RESUME)
    done = subprocess.run(
        [sys.executable, "-B", str(script), str(tmp_path / "mod"), str(tmp_path / "s"), policy],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    calls: list[str] = json.loads(done.stdout.strip().splitlines()[-1])
    return calls, done.stderr


def test_a_changed_step_is_found_by_a_resume_in_a_new_process(tmp_path: Path) -> None:
    (tmp_path / "mod").mkdir()
    steps = tmp_path / "mod" / "code_steps.py"
    steps.write_text(STEPS)
    assert resume_in_a_new_process(tmp_path, "raise")[0] == ["first", "second"]
    calls, stderr = resume_in_a_new_process(tmp_path, "raise")  # unchanged: the same hashes
    assert calls == []
    assert "changed" not in stderr
    steps.write_text(STEPS.replace("return 2", "return 22"))
    calls, stderr = resume_in_a_new_process(tmp_path, "reuse")
    assert calls == []
    assert "step second (key b) changed since its checkpoint" in stderr
    assert "first (key a) changed" not in stderr
    assert resume_in_a_new_process(tmp_path, "rerun")[0] == ["second"]


@action
def counted() -> int:
    COUNTED.append(1)
    return 1


COUNTED: list[int] = []


@pytest.mark.anyio
@pytest.mark.parametrize("recorded", ["0123456789abcdef", "b2-3.9:0123456789abcdef"])
async def test_a_record_of_another_scheme_is_not_reported_as_changed(
    tmp_path: Path, recorded: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = StorageFile(tmp_path / "s")
    flow = AsyncFlow(config=Config(storage=storage), workflow_id="scheme")
    flow.task.add(step=counted, key="k")
    COUNTED.clear()
    await flow.start(resume=True)
    blob = await storage.read("scheme/tasks/k.json")
    assert blob is not None
    assert f'"code_hash":"{counted.code_hash}"'.encode() in blob.data
    old = re.sub(rb'"code_hash":"[^"]*"', f'"code_hash":"{recorded}"'.encode(), blob.data)
    await storage.write("scheme/tasks/k.json", old)
    with caplog.at_level(logging.INFO, logger="asyncflow"):
        await flow.start(resume=True, on_code_change="raise")
        await flow.start(resume=True, on_code_change="rerun")
    assert COUNTED == [1]
    assert "changed" not in caplog.text
    different = re.sub(rb'"code_hash":"[^"]*"', b'"code_hash":"s2:0000000000000000"', blob.data)
    await storage.write("scheme/tasks/k.json", different)
    with pytest.raises(CheckpointMismatch, match="different code"):
        await flow.start(resume=True, on_code_change="raise")
