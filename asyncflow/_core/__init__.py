"""The engine that runs flows. Private: import from ``asyncflow`` instead.

It builds on the read model (``asyncflow.reading``) and the storage kernel
(``asyncflow._kernel``); see docs/architecture.md.
"""
