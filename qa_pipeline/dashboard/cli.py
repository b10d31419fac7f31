"""``qa-pipeline dashboard``: the dashboard on its own, fed from the Kafka topics.

Mount in ``qa_pipeline/cli.py``::

    from .dashboard.cli import dashboard_command
    app.command("dashboard")(dashboard_command)
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer


def dashboard_command(
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
            help="access token (full role)",
            show_default=False,
        ),
    ] = None,
    viewer_token: Annotated[
        str | None,
        typer.Option(
            "--viewer-token",
            envvar="QA_DASHBOARD_VIEWER_TOKEN",
            help="optional token of a role that sees no transcript text",
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
) -> None:
    """Serve the live QA dashboard from the pipeline's Kafka topics."""
    from ..cli_errors import fail
    from ..errors import QAError
    from ..logs import default_level
    from ..sinks.kafka import KafkaTopics
    from .kafka_feed import KafkaFeed, consumer_kwargs_from_sink, split_security, topics_of
    from .server import DashboardError, start_dashboard
    from .state import DEFAULT_FAIL_GRADE, DEFAULT_GRADES, DashboardState, grades_from_pack

    default_level("info")
    topics = KafkaTopics()
    kwargs: dict[str, Any] = {}
    grades: Any = DEFAULT_GRADES
    fail_grade: str | None = DEFAULT_FAIL_GRADE
    try:
        if config is not None:
            from ..config import load_config
            from ..rules import load_pack

            cfg = load_config(config)
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
        server = start_dashboard(state, host, port, token, viewer_token=viewer_token)
    except (DashboardError, QAError) as e:  # no token, a token too short
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
