"""The storage kernel: the layout and the record formats, below everything that reads or runs.

Private. The engine (``asyncflow._core``), the read model
(``asyncflow.reading``) and the storage backends (``asyncflow.providers``)
all build on it; it imports none of them. Errors, id validation, the keys
of the layout, the JSON codec and the serializers, checkpoint records and
how they decode, ``run.json`` (the manifest), run summaries, the lease
record, the storage protocol and its capabilities. See docs/architecture.md.
"""
