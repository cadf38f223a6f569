"""What every command shares: exit codes, one-line errors, common options, formatting."""

from __future__ import annotations

import datetime as dt
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from asyncflow._core.errors import ConfigurationError
from asyncflow._core.ids import validate_id
from asyncflow._core.storage import Storage
from asyncflow.providers import storage_from_url

__all__ = [
    "DEFAULT_STORAGE",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "STYLES",
    "CliError",
    "Group",
    "debug_option",
    "describe",
    "one_line",
    "open_storage",
    "reporting",
    "seconds",
    "storage_option",
    "validated_id",
    "when",
]

DEFAULT_STORAGE = "file://.asyncflow"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STYLES = {
    "completed": "green",
    "failed": "red",
    "skipped": "bright_black",
    "cancelled": "yellow",
    "not run": "bright_black",
    "running": "cyan",
    "waiting": "magenta",
}


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
    from asyncflow._core.errors import AsyncflowError

    if isinstance(exc, (AsyncflowError, CliError)):
        return one_line(str(exc)) or type(exc).__name__
    text = one_line(str(exc))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextmanager
def reporting(debug: bool) -> Iterator[None]:
    """Turn any exception into a ``CliError`` (one line); print the traceback with --debug."""
    try:
        yield
    except CliError:
        if debug:
            traceback.print_exc(file=sys.stderr)
        raise
    except Exception as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        code = EXIT_USAGE if isinstance(exc, ConfigurationError) else EXIT_FAILED
        raise CliError(describe(exc), code) from exc


class Group(click.Group):
    """A group whose errors, click's own included, are one ``error: ...`` line."""

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = result if isinstance(result, int) else EXIT_OK
        except CliError as exc:
            click.echo(f"error: {exc}", err=True)
            code = exc.code
        except click.UsageError as exc:
            hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
            click.echo(f"error: {one_line(exc.format_message())}{hint}", err=True)
            code = exc.exit_code
        except click.ClickException as exc:
            click.echo(f"error: {one_line(exc.format_message())}", err=True)
            code = exc.exit_code
        except click.Abort as exc:
            interrupted = isinstance(exc.__cause__, KeyboardInterrupt)
            click.echo("error: interrupted" if interrupted else "error: aborted", err=True)
            code = 130 if interrupted else EXIT_FAILED
        if not standalone_mode:
            return code
        sys.exit(code)


storage_option = click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    help="file://PATH, memory://, s3://bucket/prefix or gs://bucket/prefix.",
)
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks.")


def open_storage(url: str | None) -> Storage:
    return storage_from_url(url or DEFAULT_STORAGE)


def validated_id(value: str) -> str:
    try:
        return validate_id(value, "workflow id")
    except ConfigurationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"
