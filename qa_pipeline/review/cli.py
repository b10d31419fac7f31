"""``qa-pipeline review queue|claim|show|decide|appeal|history`` and ``qa-pipeline rules
fixtures-from-reviews``. Reviewer and agent names are free text here (the dashboard passes
its logged-in user)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from ..cli_errors import fail
from ..errors import ConfigError, QAError
from ..messages import Verdict
from ..rules import RulePack, load_pack
from ..store import DEFAULT_STORE, Store, database_errors, open_store
from . import repo
from .export import export_fixtures
from .model import Action, Decision, QueueState, ReviewError
from .views import call_view, item_json, version_json, when

review_app = typer.Typer(
    help="Review queue: confirm or overturn verdicts, agents' appeals (申诉), history.",
    no_args_is_help=True,
)

StoreOpt = Annotated[
    str, typer.Option("--store", help="Store: a SQLite path, sqlite:///path or postgresql://...")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
PackOpt = Annotated[
    Path | None,
    typer.Option(
        "--pack", help="The rule pack the calls were scored with (default: configs/rules/)."
    ),
]
RuleOpt = Annotated[list[str], typer.Option("--rule", "-r", help="A rule id (repeatable).")]
_DEFAULT = str(DEFAULT_STORE)


def _open(url: str) -> Store:
    """The store at ``url``, its migrations applied (the review tables among them)."""
    errors: tuple[type[BaseException], ...] = (QAError, OSError, *database_errors())
    try:
        return open_store(url)
    except errors as e:  # a bad path, a server that refuses
        fail(e, prefix="--store: ")


def _pack(path: Path | None) -> RulePack:
    try:
        return load_pack(path)
    except ConfigError as e:
        fail(e)


def _print(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=2))


def _guard(e: ReviewError) -> NoReturn:
    fail(e)


@review_app.command("queue")
def queue_cmd(
    store: StoreOpt = _DEFAULT,
    state: Annotated[
        list[str] | None, typer.Option("--state", help="open, in_review or done (repeatable).")
    ] = None,
    scan: Annotated[
        bool, typer.Option("--scan", help="First queue scored calls that call for review.")
    ] = False,
    below: Annotated[
        float | None, typer.Option("--below", help="With --scan: queue scores below this too.")
    ] = None,
    run: Annotated[str | None, typer.Option("--run", help="With --scan: this run only.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """The review queue (open and in review unless --state says), oldest first."""
    try:
        states = (
            [QueueState(s) for s in state] if state else [QueueState.OPEN, QueueState.IN_REVIEW]
        )
    except ValueError as e:
        fail(e, prefix="--state: ")
    with _open(store) as db:
        added = repo.scan(db, below=below, run_id=run) if scan else []
        items = repo.queue(db, states)
    if as_json:
        _print({"queued": added, "items": [item_json(i) for i in items]})
        return
    if scan:
        typer.echo(f"{len(added)} calls queued")
    for i in items:
        score = "-" if i.machine_score is None else f"{i.machine_score:g}"
        typer.echo(
            f"{i.call_id}\t{i.state.value}\t{score}\t{','.join(r.value for r in i.reasons)}\t"
            f"{','.join(i.pending_rules)}\t{i.assignee or ''}"
        )


@review_app.command("claim")
def claim_cmd(
    call: Annotated[str, typer.Argument(help="Call id.")],
    reviewer: Annotated[str, typer.Option("--reviewer", help="Who takes it.")],
    store: StoreOpt = _DEFAULT,
) -> None:
    """Take a queue item: in review, assigned to the reviewer."""
    with _open(store) as db:
        try:
            item = repo.claim(db, call, reviewer)
        except ReviewError as e:
            _guard(e)
    typer.echo(f"{item.call_id}: {item.state.value} ({item.assignee})")


@review_app.command("show")
def show_cmd(
    call: Annotated[str, typer.Argument(help="Call id.")],
    store: StoreOpt = _DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """A call for review: its transcript, findings with evidence, machine and current
    verdicts, queue item and versions."""
    with _open(store) as db:
        try:
            out = call_view(db, call)
        except ReviewError as e:
            _guard(e)
    if as_json:
        _print(out)
        return
    m, last, item = out["machine"], out["reviewed"], out["queue"]
    typer.echo(f"call {call}  run {out['run_id']}  machine {m['score']:g} {m['grade']}")
    if last:
        typer.echo(f"reviewed v{last['version']}: {last['score']:g} {last['grade']} ({last['by']})")
    if item:
        typer.echo(f"queue: {item['state']}, {','.join(item['reasons'])}")
    for u in out["transcript"]:
        typer.echo(f"  [{u['index']}] {u['start']:7.2f} {u['role']:8} {u['text']}")
    for f in out["findings"]:
        ev = "; ".join(f"#{e.get('utterance_index')} {e.get('matched', '')}" for e in f["evidence"])
        typer.echo(f"  ! {f['rule_id']} {f['severity']}: {f['message']}  [{ev}]")
    for rid, d in out["verdicts"].items():
        if d["machine"] != "passed" or d["now"] != "passed":
            mark = "" if d["now"] == d["machine"] else f" -> {d['now']}"
            typer.echo(f"  {rid}: {d['machine']}{mark}")


@review_app.command("decide")
def decide_cmd(
    call: Annotated[str, typer.Argument(help="Call id.")],
    rule: RuleOpt,
    reviewer: Annotated[str, typer.Option("--reviewer", help="Who decides.")],
    confirm: Annotated[bool, typer.Option("--confirm", help="The verdicts stand.")] = False,
    overturn: Annotated[
        str | None, typer.Option("--overturn", help="Overturn the verdicts to passed or failed.")
    ] = None,
    comment: Annotated[str, typer.Option("--comment", help="Why.")] = "",
    store: StoreOpt = _DEFAULT,
    pack: PackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Confirm or overturn verdicts of a call: a new version with the reviewed score."""
    if confirm == (overturn is not None):
        fail(ReviewError("give --confirm or --overturn passed|failed"))
    try:
        to = Verdict(overturn) if overturn is not None else None
        action = Action.OVERTURN if to is not None else Action.CONFIRM
        decisions = [Decision(r, action, to, comment) for r in rule]
    except (ValueError, ReviewError) as e:
        fail(e, prefix="--overturn: ")
    p = _pack(pack)
    with _open(store) as db:
        try:
            v = repo.review(db, p, call, reviewer, decisions)
        except ReviewError as e:
            _guard(e)
    if as_json:
        _print(version_json(v))
    else:
        typer.echo(f"{call} v{v.version}: {v.score:g} {v.grade} (by {v.actor})")


@review_app.command("appeal")
def appeal_cmd(
    call: Annotated[str, typer.Argument(help="Call id.")],
    rule: RuleOpt,
    reason: Annotated[str, typer.Option("--reason", help="Why the agent appeals.")],
    agent: Annotated[str, typer.Option("--agent", help="Who appeals.")],
    store: StoreOpt = _DEFAULT,
    pack: PackOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """An agent's appeal (申诉) of verdicts: the call goes (back) into the review queue."""
    p = _pack(pack)
    with _open(store) as db:
        try:
            v = repo.appeal(db, p, call, agent, rule, reason)
        except ReviewError as e:
            _guard(e)
    if as_json:
        _print(version_json(v))
    else:
        typer.echo(f"{call} v{v.version}: appeal of {', '.join(rule)} queued")


@review_app.command("history")
def history_cmd(
    call: Annotated[str, typer.Argument(help="Call id.")],
    store: StoreOpt = _DEFAULT,
    as_json: JsonOpt = False,
) -> None:
    """Every review and appeal of a call: who, when, why, verdicts and score."""
    with _open(store) as db:
        versions = repo.history(db, call)
    if as_json:
        _print([version_json(v) for v in versions])
        return
    for v in versions:
        typer.echo(
            f"v{v.version} {when(v.recorded_at)} {v.kind} by {v.actor}: {v.score:g} {v.grade}"
            f"{'  ' + v.why if v.why else ''}"
        )
        for d in v.decisions:
            typer.echo(
                f"    {d.rule_id} {d.action.value}: {d.verdict_before.value} -> "
                f"{d.verdict_after.value}"
            )


def fixtures_from_reviews_command(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the fixtures to.")],
    store: StoreOpt = _DEFAULT,
    since: Annotated[
        dt.datetime | None,
        typer.Option(
            "--since",
            help="Only overturns from this time (UTC unless it says).",
            formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z"],
        ),
    ] = None,
) -> None:
    """Every verdict a reviewer overturned as a rule fixture (personal data as
    placeholders); run them with ``qa-pipeline rules test --fixtures DIR``."""
    t0 = None
    if since is not None:
        t0 = (since if since.tzinfo else since.replace(tzinfo=dt.UTC)).timestamp()
    with _open(store) as db:
        try:
            files = export_fixtures(db, out, t0)
        except ReviewError as e:
            _guard(e)
    n = sum(f.fixtures for f in files)
    typer.echo(f"{n} fixtures in {len(files)} files under {out}")
