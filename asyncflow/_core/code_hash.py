"""A step's code hash: which code produced a checkpoint, for microseconds a step.

``inspect.getsource`` re-tokenizes a function's block on every call, tenths
of a millisecond each, paid for every distinct step on every run and resume.
Here a module's source is read once (and again only if the module is
reloaded), its top-level definitions are cut in one pass of a compiled
regular expression (a nested one by one match of the same pattern): the
decorators, the ``def`` line and the lines indented below it. Only a block
whose text could fool that scan (an unclosed bracket or triple quote, a
backslash continuation) goes through the tokenizer, as ``inspect`` does.

A hash is ``scheme:hex``. ``s2`` hashes source text: the same on every Python
version for unchanged source. ``b2-X.Y`` hashes bytecode, when the source is
unavailable or does not match the running code (edited after the import):
comparable only on that Python. Hashes of different schemes, the bare hex of
the first scheme among them, say nothing about each other (``comparable``),
so a resume must not call them changed code.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import linecache
import re
import sys
import tokenize
import types
from itertools import accumulate
from typing import Any

__all__ = ["SOURCE_SCHEME", "code_hash", "comparable"]

SOURCE_SCHEME = "s2"
_BYTECODE_SCHEME = f"b2-{sys.version_info[0]}.{sys.version_info[1]}"
_NAME_SCHEME = "n2"


def code_hash(target: Any, name: str) -> str:
    """``target``'s hash (a function, method or class): its source, else its bytecode."""
    text = _source_block(target)
    if text is not None:
        return f"{SOURCE_SCHEME}:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
    code = getattr(_unwrapped(target), "__code__", None)
    if isinstance(code, types.CodeType):
        return f"{_BYTECODE_SCHEME}:{_digest(_code_bytes(code))}"
    return f"{_NAME_SCHEME}:{_digest(name.encode())}"


def comparable(recorded: str, current: str) -> bool:
    """Whether two hashes were made by one scheme: only then does a difference mean a change."""
    return recorded.rpartition(":")[0] == current.rpartition(":")[0]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


class _Source:
    """One module's source as linecache gives it, joined once, with each line's offset."""

    __slots__ = ("classes", "lines", "spec", "starts", "text", "top")

    def __init__(self, lines: list[str], spec: object) -> None:
        self.lines = lines
        self.spec = spec
        self.text = "".join(lines)
        self.starts = [0, *accumulate(map(len, lines))]
        self.classes: dict[str, int] | None = None
        self.top: dict[int, tuple[tuple[str | Any, ...], str]] | None = None

    def top_level(self) -> dict[int, tuple[tuple[str | Any, ...], str]]:
        """Every top-level definition, by the offset of its first line: (keyword, name), text.

        One pass of the same pattern over the whole module: a module's steps
        are usually its top-level functions, and one scan costs less than a
        match per step.
        """
        if self.top is None:
            self.top = {m.start(): (m.groups(), m.group()) for m in _TOP_LEVEL.finditer(self.text)}
        return self.top

    def class_line(self, qualname: str) -> int | None:
        """The first line (decorators included) of the class ``qualname``, by one parse."""
        if self.classes is None:
            self.classes = {}
            try:
                tree = ast.parse(self.text)
            except (SyntaxError, ValueError):
                return None
            _collect_classes(tree, "", self.classes)
        return self.classes.get(qualname)


_FILES: dict[str, _Source] = {}


def _unwrapped(target: Any) -> Any:
    if hasattr(target, "__wrapped__"):
        target = inspect.unwrap(target)
    if isinstance(target, types.MethodType):
        target = target.__func__
    return target


def _source(filename: str, module_globals: dict[str, Any] | None) -> _Source | None:
    """The cached source of ``filename``: read once per import of its module."""
    spec = module_globals.get("__spec__") if module_globals is not None else None
    source = _FILES.get(filename)
    if source is not None and source.spec is spec:
        return source
    linecache.checkcache(filename)
    lines = linecache.getlines(filename, module_globals)
    if not lines:
        return None
    source = _FILES[filename] = _Source(lines, spec)
    return source


def _source_block(target: Any) -> str | None:
    """The source lines of ``target``'s definition, decorators included; None if unknown."""
    target = _unwrapped(target)
    if isinstance(target, type):
        module = sys.modules.get(target.__module__)
        filename = getattr(module, "__file__", None)
        if module is None or not isinstance(filename, str):
            return None
        source = _source(filename, vars(module))
        if source is None:
            return None
        first = getattr(target, "__firstlineno__", None)
        if not isinstance(first, int):
            first = source.class_line(target.__qualname__)
        return None if first is None else _block(source, first, target.__name__, "class")
    code = getattr(target, "__code__", None)
    if not isinstance(code, types.CodeType):
        return None
    module_globals = getattr(target, "__globals__", None)
    source = _source(code.co_filename, module_globals if isinstance(module_globals, dict) else None)
    if source is None:
        return None
    return _block(source, code.co_firstlineno, code.co_name, "def")


def _block(source: _Source, first: int, name: str, keyword: str) -> str | None:
    """Lines ``first``.. of ``source`` up to the end of the block that defines ``name``."""
    lines = source.lines
    start = first - 1
    if not 0 <= start < len(lines):
        return None
    line = lines[start]
    indent = line[: len(line) - len(line.lstrip())]
    if name == "<lambda>":
        match = _pattern(_LOGICAL_LINES, indent, "").match(source.text, source.starts[start])
        text = match.group() if match is not None else ""
    elif not indent:
        groups, text = source.top_level().get(source.starts[start], ((), ""))
        if groups != (keyword, name):
            return None  # the file no longer has this definition here: edited since
    else:
        match = _pattern(_DEFINITIONS, indent, _DEFINITION).match(source.text, source.starts[start])
        if match is None or match.groups() != (keyword, name):
            return None
        text = match.group()
    # A line of the block may continue a string or a bracket at any
    # indentation, where the scan would end it: then the tokenizer decides.
    if (
        not text
        or text.count('"""') % 2
        or text.count("'''") % 2
        or "\\\n" in text
        or text.count("(") != text.count(")")
        or text.count("[") != text.count("]")
        or text.count("{") != text.count("}")
    ):
        return _tokenized_block(lines, start)
    return text if text.endswith("\n") else text + "\n"


# A block at an indentation: decorators (each with its continuation lines),
# the ``def``/``class`` line, then its body: lines deeper than the
# indentation, or at it starting with a closing bracket (``) -> int:``), with
# the blank and comment lines between them; not the trailing ones. A deeper
# line is tried first: most lines of a body are one.
_BLANK = r"[ \t\f]*(?:#[^\n]*)?\n"
_DEEPER = r"{base}(?:[ \t\f]+[^\s#]|[)\]}])[^\n]*(?:\n|\Z)"
_BODY = rf"(?:{_DEEPER}|(?:{_BLANK})+{_DEEPER})*"
_DEFINITION = (
    rf"(?:{{base}}@[^\n]*(?:\n|\Z){_BODY}(?:{_BLANK})*)*"
    rf"{{base}}(?:async[ \t\f]+)?(def|class)[ \t\f]+(\w+)[^\n]*(?:\n|\Z)"
)
_DEFINITIONS: dict[str, re.Pattern[str]] = {}
_LOGICAL_LINES: dict[str, re.Pattern[str]] = {}
_TOP_LEVEL = re.compile("^" + (_DEFINITION + _BODY).replace("{base}", ""), re.MULTILINE)


def _pattern(cache: dict[str, re.Pattern[str]], indent: str, head: str) -> re.Pattern[str]:
    """``head`` (or the rest of a line), then the lines that continue it, compiled once."""
    pattern = cache.get(indent)
    if pattern is None:
        text = (head or r"[^\n]*(?:\n|\Z)") + _BODY
        pattern = cache[indent] = re.compile(text.replace("{base}", re.escape(indent)))
    return pattern


def _tokenized_block(lines: list[str], start: int) -> str | None:
    """The block as ``inspect`` cuts it, by the tokenizer; None if it does not tokenize."""
    try:
        block = inspect.getblock(lines[start:])
    except (SyntaxError, tokenize.TokenError):  # IndentationError is a SyntaxError
        return None
    text = "".join(block)
    return text if text.endswith("\n") else text + "\n"


def _collect_classes(node: ast.AST, prefix: str, found: dict[str, int]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.expr):
            continue  # no class statement inside an expression
        if isinstance(child, ast.ClassDef):
            qualname = prefix + child.name
            lines = [child.lineno, *(d.lineno for d in child.decorator_list)]
            found.setdefault(qualname, min(lines))
            _collect_classes(child, qualname + ".", found)
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
            _collect_classes(child, f"{prefix}{child.name}.<locals>.", found)
        else:
            _collect_classes(child, prefix, found)


def _code_bytes(code: types.CodeType) -> bytes:
    """Bytecode, names and constants (nested code included): the fallback's input."""
    parts = [code.co_code, repr(code.co_names).encode()]
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            parts.append(_code_bytes(const))
        elif isinstance(const, frozenset):  # set order varies with string hashing
            parts.append(repr(sorted(map(repr, const))).encode())
        else:
            parts.append(repr(const).encode())
    return b"\0".join(parts)
