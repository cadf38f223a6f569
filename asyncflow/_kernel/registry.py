"""The user's own types that ``JSONSerializer`` stores exactly: ``Config(types=[...])``.

A registered class is stored as ``{"__asyncflow__": "type", "name": NAME, "v": STATE}``
and decoded by looking ``NAME`` up here, never by importing it: a record
can only ever build a class that the program itself handed to the registry.

What ``STATE`` is, per kind of class:

* dataclass, attrs class, NamedTuple, msgspec Struct, Pydantic model: a dict
  of field name to value (each value encoded in turn, so registered types
  nest). Dataclasses and attrs classes are rebuilt without calling
  ``__init__`` (as ``pickle`` does), so ``__post_init__``, converters and
  validators do not run twice over already-converted values; NamedTuples,
  Structs and Pydantic models (``model_construct``) are rebuilt from their
  fields. A Pydantic model also keeps which fields were set (``"set"``) and
  its extra fields (``"extra"``); private attributes are not stored.
* enum: the member's value, rebuilt with ``cls(value)``.

Pydantic, msgspec and attrs are recognised through ``sys.modules`` and duck
typing: none of them is imported here.
"""

from __future__ import annotations

import dataclasses
import enum
import sys
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from asyncflow._kernel.errors import ConfigurationError

__all__ = ["Registered", "TypeRegistry", "UnknownType", "field_names", "kind_of"]

_MISSING = object()


class UnknownType(ValueError):
    """A record names a type that this program has not registered."""


def kind_of(cls: Any) -> str | None:
    """Which kind of registrable class ``cls`` is, or ``None``."""
    if not isinstance(cls, type):
        return None
    if issubclass(cls, enum.Enum):
        return "enum"
    if issubclass(cls, tuple) and hasattr(cls, "_fields") and hasattr(cls, "_make"):
        return "namedtuple"
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(cls, pydantic.BaseModel):
        return "pydantic"
    msgspec = sys.modules.get("msgspec")
    if msgspec is not None and issubclass(cls, msgspec.Struct):
        return "msgspec"
    if hasattr(cls, "__attrs_attrs__"):
        return "attrs"
    if dataclasses.is_dataclass(cls):
        return "dataclass"
    return None


@dataclasses.dataclass(frozen=True, slots=True)
class Registered:
    """One registered class: its stored name, kind and field names."""

    name: str
    cls: Any
    kind: str
    fields: tuple[str, ...]

    def state(self, value: Any) -> tuple[Any, dict[str, Any]]:
        """``(STATE, extra keys of the tagged object)`` before the values are encoded."""
        if self.kind == "enum":
            return value.value, {}
        if self.kind == "namedtuple":
            return dict(zip(self.fields, value, strict=True)), {}
        state = {name: getattr(value, name) for name in self.fields}
        if self.kind != "pydantic":
            return state, {}
        more: dict[str, Any] = {}
        fields_set = value.model_fields_set
        if fields_set != set(self.fields):
            more["set"] = sorted(fields_set)
        extra = value.__pydantic_extra__
        if extra:
            more["extra"] = dict(extra)
        return state, more

    def build(self, state: Any, more: dict[str, Any]) -> Any:
        """The instance for a decoded ``STATE``; a mismatch with the class is ``ValueError``."""
        cls = self.cls
        if self.kind == "enum":
            try:
                return cls(state)
            except ValueError:
                raise ValueError(
                    f"type {self.name!r} has no member with value {state!r} any more"
                ) from None
        if type(state) is not dict:
            raise ValueError(f"the state of type {self.name!r} is not a dict of fields")
        unknown = [name for name in state if name not in self.fields]
        if unknown:
            raise ValueError(
                f"the record of type {self.name!r} has field(s) {unknown} that the class"
                " no longer has"
            )
        if self.kind == "namedtuple":
            return self._call(cls, state)
        if self.kind == "msgspec":
            return self._call(cls, state)
        if self.kind == "pydantic":
            fields_set = set(more["set"]) if "set" in more else set(state)
            values = {**more.get("extra", {}), **state}
            missing = [
                name
                for name, info in cls.model_fields.items()
                if name not in state and info.is_required()
            ]
            if missing:
                raise ValueError(self._missing(missing))
            return cls.model_construct(_fields_set=fields_set, **values)
        return self._bypass_init(state)

    def _call(self, cls: Callable[..., Any], state: dict[str, Any]) -> Any:
        try:
            return cls(**state)
        except TypeError as exc:
            raise ValueError(f"cannot rebuild type {self.name!r}: {exc}") from None

    def _missing(self, names: list[str]) -> str:
        return (
            f"the record of type {self.name!r} lacks field(s) {names}, which have no default"
            " in the class now"
        )

    def _bypass_init(self, state: dict[str, Any]) -> Any:
        """Dataclass or attrs instance from its fields, defaults for fields added since."""
        obj = self.cls.__new__(self.cls)
        later: list[tuple[str, Callable[[Any], Any]]] = []
        missing: list[str] = []
        for name, default in _defaults(self.cls, self.kind):
            if name in state:
                value = state[name]
            elif default is _MISSING:
                missing.append(name)
                continue
            elif isinstance(default, _Factory):
                if default.takes_self:
                    later.append((name, default.factory))
                    continue
                value = default.factory()
            else:
                value = default
            object.__setattr__(obj, name, value)
        if missing:
            raise ValueError(self._missing(missing))
        for name, factory in later:
            object.__setattr__(obj, name, factory(obj))
        return obj


@dataclasses.dataclass(frozen=True, slots=True)
class _Factory:
    factory: Callable[..., Any]
    takes_self: bool = False


def _defaults(cls: type, kind: str) -> Iterable[tuple[str, Any]]:
    if kind == "dataclass":
        for f in dataclasses.fields(cls):
            if f.default is not dataclasses.MISSING:
                yield f.name, f.default
            elif f.default_factory is not dataclasses.MISSING:
                yield f.name, _Factory(f.default_factory)
            else:
                yield f.name, _MISSING
        return
    for a in cls.__attrs_attrs__:  # type: ignore[attr-defined]
        default = a.default
        if type(default).__name__ == "Factory" and hasattr(default, "factory"):
            yield a.name, _Factory(default.factory, bool(getattr(default, "takes_self", False)))
        elif default is None or type(default).__name__ != "_Nothing":
            yield a.name, default
        else:
            yield a.name, _MISSING


def field_names(cls: type, kind: str) -> tuple[str, ...]:
    if kind == "enum":
        return ()
    if kind == "namedtuple":
        return tuple(cls._fields)  # type: ignore[attr-defined]
    if kind == "pydantic":
        return tuple(cls.model_fields)  # type: ignore[attr-defined]
    if kind == "msgspec":
        return tuple(cls.__struct_fields__)  # type: ignore[attr-defined]
    if kind == "attrs":
        return tuple(a.name for a in cls.__attrs_attrs__)  # type: ignore[attr-defined]
    return tuple(f.name for f in dataclasses.fields(cls))


def default_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class TypeRegistry:
    """Name <-> class for the registered types; immutable once built."""

    __slots__ = ("by_class", "by_name")

    def __init__(self, types: Iterable[type] | Mapping[str, type] = ()) -> None:
        self.by_class: dict[type, Registered] = {}
        self.by_name: dict[str, Registered] = {}
        if isinstance(types, Mapping):
            pairs = [(name, cls) for name, cls in types.items()]
        elif isinstance(types, (str, bytes)) or not isinstance(types, Iterable):
            raise ConfigurationError(
                f"types must be a list of classes or a dict of name to class, got {types!r}"
            )
        else:
            pairs = [(default_name(cls) if isinstance(cls, type) else "", cls) for cls in types]
        for name, cls in pairs:
            self._add(name, cls)

    def _add(self, name: str, cls: Any) -> None:
        kind = kind_of(cls)
        if kind is None:
            raise ConfigurationError(
                f"cannot register {cls!r}: types= takes dataclasses, enums, NamedTuples,"
                " Pydantic v2 models, msgspec Structs and attrs classes"
            )
        if type(name) is not str or not name:
            raise ConfigurationError(f"the name of registered type {cls!r} must be a non-empty str")
        if name in self.by_name and self.by_name[name].cls is not cls:
            raise ConfigurationError(
                f"two registered types are both named {name!r}:"
                f" {self.by_name[name].cls!r} and {cls!r}; register them with"
                " types={'name': cls, ...} to tell them apart"
            )
        if cls in self.by_class and self.by_class[cls].name != name:
            raise ConfigurationError(f"{cls!r} is registered twice, under two names")
        entry = Registered(name, cls, kind, field_names(cls, kind))
        self.by_class[cls] = entry
        self.by_name[name] = entry

    def merged(self, other: TypeRegistry) -> TypeRegistry:
        merged = TypeRegistry()
        for entry in (*self.by_name.values(), *other.by_name.values()):
            merged._add(entry.name, entry.cls)
        return merged

    def lookup(self, name: Any) -> Registered:
        entry = self.by_name.get(name) if type(name) is str else None
        if entry is None:
            raise UnknownType(
                f"the record holds an instance of type {name!r}, which is not registered:"
                " pass it in Config(types=[...]) (a record never imports a class)"
            )
        return entry

    def __len__(self) -> int:
        return len(self.by_name)
