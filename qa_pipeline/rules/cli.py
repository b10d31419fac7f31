"""``qa-pipeline rules test|lint``: run a pack's fixtures and check the pack."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..cli_errors import fail
from ..errors import ConfigError
from .fixtures import check_ids, default_fixtures_dir, load_fixtures, run_fixtures
from .lint import lint_pack
from .pack import load_pack

rules_app = typer.Typer(help="Rule packs: run fixtures, lint.", no_args_is_help=True)

PackArg = Annotated[
    Path | None,
    typer.Argument(help="Rule pack directory or YAML file (default: configs/rules/)."),
]


def _console() -> Console:
    return Console(width=140, soft_wrap=False)


@rules_app.command("test")
def test_cmd(
    pack: PackArg = None,
    fixtures: Annotated[
        Path | None, typer.Option("--fixtures", help="Fixture directory or file.")
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="List passing checks.")] = False,
) -> None:
    """Run every fixture through the pack; exit 1 if any expectation fails, 2 if the pack or
    its fixtures cannot be loaded."""
    con = _console()
    try:
        p = load_pack(pack)
        fx_dir = fixtures if fixtures is not None else default_fixtures_dir(pack)
        fxs = load_fixtures(fx_dir)
        bad_ids = check_ids(p, fxs)
        if bad_ids:
            raise ConfigError(bad_ids)
    except ConfigError as e:  # the pack or fixtures cannot be used: exit 2, one line each
        fail(e)
    outcomes = run_fixtures(p, fxs)
    failed = [o for o in outcomes if not o.ok]
    table = Table(title=f"rule fixtures: {p.name} {p.version}")
    for col in ("fixture", "rule", "expected", "actual", "result", "detail"):
        table.add_column(col, overflow="fold")
    for o in outcomes:
        if o.ok and not verbose:
            continue
        table.add_row(
            o.fixture,
            o.rule_id,
            o.expected,
            o.actual,
            "[green]ok[/green]" if o.ok else "[red]FAIL[/red]",
            o.detail[:80],
        )
    if table.row_count:
        con.print(table)
    con.print(
        f"{len(fxs)} fixtures, {len(outcomes)} expectations, "
        f"{len(outcomes) - len(failed)} passed, {len(failed)} failed",
        highlight=False,
    )
    if failed:
        raise typer.Exit(1)


@rules_app.command("lint")
def lint_cmd(
    pack: PackArg = None,
    fixtures: Annotated[
        Path | None, typer.Option("--fixtures", help="Fixture directory or file.")
    ] = None,
) -> None:
    """Check the pack: load errors, rules without fixtures, unreachable conditions. Exit 1
    when it finds an error, 2 when the pack or fixtures path does not exist."""
    for given in (pack, fixtures):
        if given is not None and not given.exists():
            typer.echo(f"error: {given}: no such file or directory", err=True)
            raise typer.Exit(2)
    con = _console()
    issues = lint_pack(pack, fixtures)
    for i in issues:
        colour = "red" if i.level == "error" else "yellow"
        con.print(f"[{colour}]{i}[/{colour}]", highlight=False)
    errors = sum(1 for i in issues if i.level == "error")
    con.print(f"{errors} errors, {len(issues) - errors} warnings", highlight=False)
    if errors:
        raise typer.Exit(1)
