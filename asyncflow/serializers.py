"""How step outputs become bytes in a checkpoint, and back.

``JSONSerializer`` (the default) is strict: a value is either stored so that
it decodes to an equal value of the *same type*, or refused with
``SerializationError`` before anything is written. Nothing is ever passed
through ``str()``.

Exact round-trip, via a tagged object ``{"__asyncflow__": tag, "v": ...}``:
``tuple``, ``set``, ``frozenset``, ``bytes``, ``bytearray``, ``datetime``,
``date``, ``time``, ``timedelta``, ``Decimal``, ``UUID``, non-finite floats,
ints too long for a decimal JSON number (stored as hex), dicts with
non-``str`` keys (or with the tag key itself). Set items are stored sorted,
so equal sets encode to the same bytes in every process. ``datetime`` and
``time`` must be naive or carry a ``datetime.timezone`` offset that their ISO
text holds exactly (no named timezones, no sub-second offsets, ``fold=0``).

Your own types round-trip exactly once registered (``Config(types=[...])``,
see ``asyncflow._kernel.registry``): dataclasses, enums, NamedTuples, Pydantic
v2 models, msgspec Structs and attrs classes, nested in each other and in
the types above. Decoding builds only registered classes, looked up by name;
it never imports a name found in a record.

Refused (register or convert first, or opt into ``PickleSerializer``):
unregistered classes, and subclasses of the built-in types (``OrderedDict``,
``defaultdict``...), because decoding them would either change their type
silently or import code named by the record. So is an output nested more
than ``MAX_DEPTH`` levels deep as stored: whatever is written can be read.

``PickleSerializer`` stores anything picklable. Unpickling runs code chosen by
whoever wrote the record: use it only on storage that only you can write, or
together with ``Config(signing_key=...)``.
"""

from asyncflow._kernel.public import publish
from asyncflow._kernel.serializers import MAX_DEPTH, JSONSerializer, PickleSerializer, Serializer

__all__ = ["MAX_DEPTH", "JSONSerializer", "PickleSerializer", "Serializer"]

publish(__name__, globals())
