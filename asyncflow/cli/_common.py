"""What every command shares: exit codes, one-line errors, common options, formatting."""

from __future__ import annotations

import datetime as dt
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import rich.box
import rich.console
import rich.table

from asyncflow import AsyncflowError, ConfigurationError
from asyncflow.providers import Storage, storage_from_url
from asyncflow.reading import close_matches, validate_id

__all__ = [
    "DEFAULT_STORAGE",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_USAGE",
    "STORAGE_ENV",
    "STYLES",
    "CliError",
    "Group",
    "SuggestingChoice",
    "console",
    "debug_option",
    "describe",
    "new_table",
    "one_line",
    "open_storage",
    "reporting",
    "seconds",
    "storage_option",
    "storage_url",
    "unknown_workflow",
    "validated_id",
    "when",
]

DEFAULT_STORAGE = "file://.asyncflow"
STORAGE_ENV = "ASYNCFLOW_STORAGE"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
STYLES = {
    "completed": "green",
    "failed": "red",
    "skipped": "bright_black",
    "cancelled": "yellow",
    "not run": "bright_black",
    "pending": "bright_black",
    "running": "cyan",
    "waiting": "magenta",
    "crashed": "red",
    "forked": "blue",
    "reset": "blue",
}


class CliError(Exception):
    """A failure to report as one line, with an exit code."""

    def __init__(self, message: str, code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.code = code


def one_line(text: str) -> str:
    return " ".join(text.split())


def describe(exc: BaseException) -> str:
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


class SuggestingChoice(click.Choice):  # type: ignore[type-arg]
    """``click.Choice`` whose refusal adds "did you mean ...?"."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            hint = close_matches(str(value), [str(c) for c in self.choices])
            if not hint:
                raise
            raise click.BadParameter(f"{exc.message}{hint}", ctx, param) from None


storage_option = click.option(
    "--storage",
    "storage_url",
    metavar="URL",
    help="file://PATH, memory://, s3://bucket/prefix or gs://bucket/prefix."
    f" Default: ${STORAGE_ENV}, else {DEFAULT_STORAGE}.",
)
debug_option = click.option("--debug", is_flag=True, help="Show tracebacks.")


def storage_url(url: str | None) -> str:
    """``--storage``, else ``$ASYNCFLOW_STORAGE``, else ``file://.asyncflow``."""
    return url or os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def open_storage(url: str | None) -> Storage:
    return storage_from_url(storage_url(url))


#: Width of piped output without $COLUMNS: tables take their natural width.
_PIPED_WIDTH = 4096


def console(*, stderr: bool = False) -> rich.console.Console:
    """A console whose text is never cut.

    On a terminal (or with ``$COLUMNS``) tables fold long cells to fit its
    width, 80 columns included. Piped without ``$COLUMNS``, tables keep their
    natural width and no line is wrapped, so ``grep`` and ``cut`` see each
    id and message whole.
    """
    made = rich.console.Console(stderr=stderr, highlight=False)
    if not made.is_terminal:
        made.soft_wrap = True
        if not os.environ.get("COLUMNS"):
            made.width = _PIPED_WIDTH
    return made


def new_table(
    *columns: str, title: str | None = None, whole: tuple[str, ...] = ()
) -> rich.table.Table:
    """A light table that folds a long cell onto more lines instead of cutting it.

    Columns named in ``whole`` (ids, times) are never broken; the others give
    way first, so an 80-column table keeps ids copyable.
    """
    table = rich.table.Table(
        title=title, title_justify="left", pad_edge=False, box=rich.box.SIMPLE_HEAD
    )
    for column in columns:
        table.add_column(column, overflow="fold", no_wrap=column in whole)
    return table


def unknown_workflow(workflow_id: str, known: list[str], where: str) -> CliError:
    """'no workflow X in Y (did you mean ...?)'."""
    return CliError(
        f"no workflow {workflow_id} in {where}"
        f"{close_matches(workflow_id, [w for w in known if w != workflow_id])}",
        EXIT_FAILED,
    )


def validated_id(value: str) -> str:
    try:
        return validate_id(value, "workflow id")
    except ConfigurationError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    try:
        moment = dt.datetime.fromtimestamp(timestamp, tz=dt.timezone.utc)
    except (ValueError, OverflowError, OSError, TypeError):  # a tampered record's time
        return f"invalid time {timestamp!r}"
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}s"
