"""A user's mistake (bad config, missing file, unwritable output) as ``error: …`` lines.

Every command reports such errors on stderr, one line per problem (a config file with
three problems gives three lines, each naming the file, line and key), without a
traceback, and exits with status 2. Tracebacks are left for bugs.
"""

from __future__ import annotations

from typing import NoReturn

import typer

from .errors import ConfigError

#: Exit status of a command refused for bad configuration or input.
EXIT_CONFIG = 2


def error_lines(exc: BaseException) -> list[str]:
    """The problem(s) in ``exc`` as single lines."""
    if isinstance(exc, ConfigError) and exc.problems:
        return [_one_line(f"{loc}: {msg}") for loc, msg in exc.problems]
    if isinstance(exc, OSError) and exc.strerror:
        where = exc.filename if exc.filename is not None else ""
        return [_one_line(f"{where}: {exc.strerror}" if where else exc.strerror)]
    return [_one_line(str(exc) or type(exc).__name__)]


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.strip().splitlines() if part.strip())


def fail(exc: BaseException, code: int = EXIT_CONFIG, prefix: str = "") -> NoReturn:
    """Print ``error: [prefix]…`` for each problem in ``exc`` and exit with ``code``."""
    for line in error_lines(exc):
        typer.echo(f"error: {prefix}{line}", err=True)
    raise typer.Exit(code)
