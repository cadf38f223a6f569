"""The engine. Private: import from ``asyncflow`` instead."""
