"""The ``asyncflow`` command group; the command modules register on it."""

from __future__ import annotations

from typing import NoReturn

import click

from asyncflow.cli._common import Group

__all__ = ["cli", "main"]


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="asyncflow-durable", prog_name="asyncflow")
def cli() -> None:
    """Run asyncflow workflows and inspect their checkpoints."""


def main(argv: list[str] | None = None) -> NoReturn:
    """Console-script entry point: ``asyncflow ...``."""
    cli.main(args=argv, prog_name="asyncflow")
    raise AssertionError("unreachable")  # pragma: no cover
