"""The package version: a leaf module, so any module may import it without the package root."""

__all__ = ["__version__"]

__version__ = "0.1.0.dev0"
