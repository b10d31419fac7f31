"""``qa-pipeline dashboard``: the dashboard on its own, fed from the Kafka topics, and its
users and audit log.

Mount in ``qa_pipeline/cli.py``::

    from .dashboard.cli import dashboard_app
    app.add_typer(dashboard_app, name="dashboard")

``qa-pipeline dashboard --kafka ...`` serves; ``qa-pipeline dashboard users add|passwd|list|
remove`` edit the users file (``--users``, else ``$QA_DASHBOARD_USERS``, else
``dashboard-users.yaml``); ``qa-pipeline dashboard audit`` prints the audit log.
"""

from __future__ import annotations

import getpass
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from .audit import DEFAULT_AUDIT_LOG

DEFAULT_USERS = "dashboard-users.yaml"

dashboard_app = typer.Typer(
    help="The live QA dashboard (standalone, from Kafka), its users and audit log.",
    invoke_without_command=True,
)
users_app = typer.Typer(
    help="Dashboard users: roles, teams, argon2 password hashes.", no_args_is_help=True
)
dashboard_app.add_typer(users_app, name="users")


def dashboard_command(
    ctx: typer.Context,
    kafka: Annotated[
        str | None,
        typer.Option(
            "--kafka",
            help="bootstrap servers, comma-separated (default: sinks.kafka of --config)",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            envvar="QA_DASHBOARD_TOKEN",
            help="API key for machines (Authorization: Bearer / X-API-Key header; admin read)",
            show_default=False,
        ),
    ] = None,
    viewer_token: Annotated[
        str | None,
        typer.Option(
            "--viewer-token",
            envvar="QA_DASHBOARD_VIEWER_TOKEN",
            help="optional read-only API key that sees no transcript text",
            show_default=False,
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="listen address")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="listen port (0 = any)")] = 8787,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="pipeline YAML: sinks.kafka gives topics and TLS/SASL settings, "
            "rules.pack the grade scale",
        ),
    ] = None,
    group_id: Annotated[
        str | None, typer.Option("--group-id", help="consumer group (default: none)")
    ] = None,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="replay what the topics retain")
    ] = False,
    max_calls: Annotated[int, typer.Option("--max-calls", help="calls kept in memory")] = 500,
    users: Annotated[
        Path | None,
        typer.Option(
            "--users",
            envvar="QA_DASHBOARD_USERS",
            help="users file people log in from (qa-pipeline dashboard users add)",
            show_default=False,
        ),
    ] = None,
    audit_log: Annotated[
        Path,
        typer.Option("--audit-log", help="append-only JSONL of who opened which transcript"),
    ] = Path(DEFAULT_AUDIT_LOG),
    secure_cookie: Annotated[
        bool,
        typer.Option("--secure-cookie", help="mark the session cookie Secure (TLS proxy)"),
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="the store (SQLite path, sqlite:///path or postgresql://...): its calls on "
            "the history pages (list, search, trends, agent pages, exports), alert "
            "acknowledgements, the review queue and appeals (/review, scored by the --config's "
            "rules.pack); none: live calls only",
            show_default=False,
        ),
    ] = None,
    review_below: Annotated[
        float | None,
        typer.Option("--review-below", help="with --store: queue machine scores below this"),
    ] = 60.0,
) -> None:
    """Serve the live QA dashboard from the pipeline's Kafka topics."""
    if ctx.invoked_subcommand is not None:
        return
    from ..cli_errors import fail
    from ..errors import QAError
    from ..logs import default_level
    from ..sinks.kafka import KafkaTopics
    from .acks import DEFAULT_KEEP_DAYS
    from .kafka_feed import KafkaFeed, consumer_kwargs_from_sink, split_security, topics_of
    from .server import DashboardError, start_dashboard
    from .state import DEFAULT_FAIL_GRADE, DEFAULT_GRADES, DashboardState, grades_from_pack

    default_level("info")
    topics = KafkaTopics()
    kwargs: dict[str, Any] = {}
    grades: Any = DEFAULT_GRADES
    pack: Any = None  # the review's pack: --config's rules.pack (None: configs/rules/)
    fail_grade: str | None = DEFAULT_FAIL_GRADE
    keep_days: float | None = DEFAULT_KEEP_DAYS  # acknowledgements: the config's retention
    try:
        if config is not None:
            from ..config import load_config
            from ..rules import load_pack

            cfg = load_config(config)
            keep_days = cfg.retention.scorecards
            if cfg.sinks.kafka is not None:
                topics = cfg.sinks.kafka.topics
                kwargs = consumer_kwargs_from_sink(cfg.sinks.kafka)
            pack = load_pack(cfg.rules.pack) if cfg.rules.pack else load_pack()
            grades, fail_grade = grades_from_pack(pack)
        if kafka:
            kwargs["bootstrap_servers"] = [s.strip() for s in kafka.split(",") if s.strip()]
        if not kwargs.get("bootstrap_servers"):
            raise ValueError("give --kafka HOST:PORT or a --config with sinks.kafka")
        servers, security, _ = split_security(kwargs)
        security.check_servers(servers)  # no plaintext to a remote broker unless written
        if not 0 <= port <= 65535:
            raise ValueError(f"--port: {port} is not a port (0-65535)")
        state = DashboardState(grades=grades, fail_grade=fail_grade, max_calls=max_calls)
    except (DashboardError, QAError, ValueError) as e:  # exit 2, one line per problem
        fail(e)
    try:
        server = start_dashboard(
            state,
            host,
            port,
            token,
            viewer_token=viewer_token,
            users=users,
            audit_log=audit_log,
            secure_cookie=secure_cookie,
            store=store,
            review_pack=pack,
            review_below=review_below,
            acks_keep_days=keep_days,
        )
    except (DashboardError, QAError) as e:  # no users nor token, a token too short
        fail(e)
    except OSError as e:  # the port is taken, the address is not ours
        fail(e, code=1, prefix="cannot start: ")
    feed = KafkaFeed(
        state,
        topics_of(topics),
        kwargs,
        group_id=group_id,
        from_beginning=from_beginning,
    ).start()
    typer.echo(f"dashboard: {server.url}  (topics: {', '.join(feed.topics)})", err=True)
    done = threading.Event()

    def _stop(*_: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    done.wait()
    feed.stop()
    state.close()
    server.stop()


dashboard_app.callback(invoke_without_command=True)(dashboard_command)


# -- users ------------------------------------------------------------------------------------


def _users_path(path: Path | None) -> Path:
    return path if path is not None else Path(DEFAULT_USERS)


def _read_password(confirm: bool = True) -> str:
    """From the terminal (asked twice), or the first line of stdin when it is not one."""
    from .users import UsersError

    if sys.stdin.isatty():
        pw = getpass.getpass("password: ")
        if confirm and getpass.getpass("again: ") != pw:
            raise UsersError("the two passwords differ")
    else:
        pw = sys.stdin.readline().rstrip("\r\n")
    return pw


def _edit_users(path: Path, change: Any) -> None:
    from ..cli_errors import fail
    from ..errors import QAError
    from .users import load_users, save_users

    try:
        users = load_users(path)
        save_users(path, change(users))
    except (QAError, ValueError) as e:
        fail(e)


UsersFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--users",
        "-u",
        envvar="QA_DASHBOARD_USERS",
        help=f"the users file (default: {DEFAULT_USERS})",
        show_default=False,
    ),
]


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="login name")],
    role: Annotated[
        str, typer.Option("--role", "-r", help="agent | supervisor | qa | viewer | admin")
    ],
    team: Annotated[
        list[str] | None, typer.Option("--team", "-t", help="a team (repeat for several)")
    ] = None,
    agent_id: Annotated[
        str | None,
        typer.Option("--agent-id", help="for an agent: the agent id its calls carry"),
    ] = None,
    users: UsersFileOpt = None,
) -> None:
    """Add a user; the password is read from the terminal (twice) or from stdin, never
    from the command line."""
    from pydantic import ValidationError

    from ..cli_errors import fail
    from ..errors import QAError
    from .users import User, UserRole, UsersError, hash_password

    path = _users_path(users)
    try:
        try:
            user = User(
                name=name,
                role=UserRole(role),
                teams=tuple(team or ()),
                agent_id=agent_id,
            )
        except ValidationError as e:  # one plain line per problem
            raise UsersError("; ".join(str(x["msg"]) for x in e.errors())) from None
        user = user.model_copy(update={"password_hash": hash_password(_read_password())})
    except (QAError, ValueError) as e:
        fail(e)

    def change(us: list[Any]) -> list[Any]:
        if any(u.name == name for u in us):
            raise UsersError(f"user {name!r} exists already (passwd changes the password)")
        return [*us, user]

    _edit_users(path, change)
    typer.echo(f"added {name} ({role}) to {path}", err=True)


@users_app.command("passwd")
def users_passwd(
    name: Annotated[str, typer.Argument(help="login name")],
    users: UsersFileOpt = None,
) -> None:
    """Set a user's password (from the terminal or stdin)."""
    from ..cli_errors import fail
    from ..errors import QAError
    from .users import UsersError, hash_password, load_users

    path = _users_path(users)
    try:
        if not any(u.name == name for u in load_users(path)):
            raise UsersError(f"no user {name!r} in {path}")
        new_hash = hash_password(_read_password())
    except (QAError, ValueError) as e:
        fail(e)

    def change(us: list[Any]) -> list[Any]:
        return [
            u.model_copy(update={"password_hash": new_hash}) if u.name == name else u for u in us
        ]

    _edit_users(path, change)
    typer.echo(f"password of {name} changed", err=True)


@users_app.command("remove")
def users_remove(
    name: Annotated[str, typer.Argument(help="login name")],
    users: UsersFileOpt = None,
) -> None:
    """Remove a user (its sessions end at their next request)."""
    from .users import UsersError

    path = _users_path(users)

    def change(us: list[Any]) -> list[Any]:
        if not any(u.name == name for u in us):
            raise UsersError(f"no user {name!r} in {path}")
        return [u for u in us if u.name != name]

    _edit_users(path, change)
    typer.echo(f"removed {name}", err=True)


@users_app.command("list")
def users_list(
    users: UsersFileOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="one JSON object per user")] = False,
) -> None:
    """The users: name, role, teams, agent id (no password hashes)."""
    from ..cli_errors import fail
    from ..errors import QAError
    from .users import load_users

    try:
        us = load_users(_users_path(users))
    except QAError as e:
        fail(e)
    for u in us:
        if json_out:
            typer.echo(json.dumps(u.public(), ensure_ascii=False))
        else:
            teams = ",".join(u.teams) or "-"
            typer.echo(f"{u.name}\t{u.role.value}\t{teams}\t{u.agent_id or '-'}")


# -- audit ------------------------------------------------------------------------------------


@dashboard_app.command("audit")
def audit_command(
    audit_log: Annotated[Path, typer.Option("--audit-log", "-f", help="the audit log")] = Path(
        DEFAULT_AUDIT_LOG
    ),
    user: Annotated[str | None, typer.Option("--user", help="only this user")] = None,
    call: Annotated[str | None, typer.Option("--call", help="only this call id")] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="only from this ISO time (UTC if no zone)")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="the records as JSON lines")] = False,
) -> None:
    """Who opened which call's transcript (the dashboard's audit log)."""
    from ..cli_errors import fail
    from .audit import read_audit

    try:
        records = list(read_audit(audit_log, user=user, call_id=call, since=since))
    except (OSError, ValueError) as e:
        fail(e)
    for r in records:
        if json_out:
            typer.echo(json.dumps(r, ensure_ascii=False))
        else:
            typer.echo(
                f"{r.get('time')}\t{r.get('user')}\t{r.get('role')}\t{r.get('call_id')}\t"
                f"{r.get('route')}\t{r.get('client')}"
            )
