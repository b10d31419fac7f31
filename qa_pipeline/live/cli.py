"""``qa-pipeline serve``: run the live service from a config file until SIGTERM/SIGINT.

Mount it in ``qa_pipeline/cli.py`` with::

    from .live.cli import serve_command
    app.command("serve")(serve_command)

Exit codes: 0 after a clean drain, 2 for a config error (the file, the rule pack, a sink
that cannot be made, a dashboard without a token: one ``error:`` line per problem, no
traceback), 1 when the service could not start (model, port in use, ...).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path
from typing import Annotated

import typer

from ..errors import QAError

log = logging.getLogger("qa_pipeline.live")


def serve_command(
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="serve config (see configs/serve.example.yaml)"),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(
            "--device",
            help="also capture a local audio device (index or name; 'default'); needs pyaudio",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="override metrics.port (0 = any)")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="write every ended call here (overrides store:): a SQLite path or a "
            "postgresql:// URL; default out/qa-store.sqlite unless the config says null",
        ),
    ] = None,
) -> None:
    """Run the live-call service: sources -> VAD -> shared Whisper -> rules -> sinks."""
    from ..cli_errors import fail
    from ..dashboard.server import DashboardError
    from ..logs import default_level
    from ..store import DEFAULT_STORE
    from .config import DeviceSourceConfig, load_serve_config

    default_level("info")
    try:
        cfg = load_serve_config(config)
        updates: dict[str, object] = {}
        if device is not None:
            updates["sources"] = (*cfg.sources, DeviceSourceConfig(device=device))
        if metrics_port is not None:
            if not 0 <= metrics_port <= 65535:
                raise ValueError(f"--metrics-port: {metrics_port} is not a port (0-65535)")
            updates["metrics"] = cfg.metrics.model_copy(update={"port": metrics_port})
        if store is not None:
            updates["store"] = store
        elif "store" not in cfg.model_fields_set:  # not said: the embedded default
            updates["store"] = str(DEFAULT_STORE)
        if updates:
            cfg = cfg.model_copy(update=updates)
        service = _prepare(cfg)
    except (QAError, DashboardError, OSError, ValueError) as e:  # the config: exit 2
        fail(e)
    try:
        code = asyncio.run(run_service(service))
    except (QAError, ImportError, OSError) as e:  # could not start (model, port, ...)
        fail(e, code=1, prefix="cannot start: ")
    raise typer.Exit(code)


def _prepare(cfg: object) -> object:
    """Everything the config decides, checked before anything starts: the rule pack, the
    dashboard's token, the sinks (a JSONL directory that cannot be made fails here), the
    sources. Returns the (not yet started) ``LiveService``."""
    from prometheus_client import CollectorRegistry

    from ..dashboard.acks import FileAckStore, acks_path_beside
    from ..dashboard.audit import AuditLog
    from ..dashboard.server import resolve_tokens, resolve_users
    from ..dashboard.users import UserDirectory
    from ..notify import NotifierSink
    from ..rules import load_pack
    from ..sinks import build_sinks
    from .config import ServeConfig
    from .metrics import LiveMetrics
    from .service import LiveService, build_source

    assert isinstance(cfg, ServeConfig)
    pack = load_pack(cfg.rules.pack, cfg.rules.settings or None)
    if cfg.dashboard is not None and cfg.dashboard.enabled:
        d = cfg.dashboard
        resolve_tokens(d.token_value(), d.viewer_token_value(), users=d.users)
        UserDirectory(resolve_users(d.users))  # a users file that cannot be read fails here
        AuditLog(d.audit_log)  # so does an audit log that cannot be written
        FileAckStore(acks_path_beside(d.audit_log))  # and the acknowledgements beside it
    sources = [build_source(s) for s in cfg.sources]
    metrics = LiveMetrics(CollectorRegistry())
    fanout = build_sinks(cfg.sinks, metrics)
    if cfg.notify is not None and cfg.notify.notifiers:
        fanout.sinks.append(
            ("notify", NotifierSink(cfg.notify, registry=metrics.registry, observer=metrics))
        )
    return LiveService(cfg, pack=pack, metrics=metrics, sinks=fanout, sources=sources)


async def run_service(service: object) -> int:
    """Start the service, wait for SIGTERM/SIGINT, drain; returns the exit code.

    ``/healthz`` and ``/readyz`` are served on the metrics listener (``metrics.host``:
    ``metrics.port``; :mod:`.health`), which starts before the model loads: ``/healthz``
    answers 200 at once, ``/readyz`` 503 until the service is ready."""
    from ..dashboard import DashboardSink, DashboardState, start_dashboard
    from ..metrics import start_metrics_server
    from .health import mount_health
    from .service import LiveService

    assert isinstance(service, LiveService)
    cfg = service.config
    metrics = service.metrics
    fanout = service.sinks
    server = None
    if cfg.metrics.enabled:
        server = start_metrics_server(metrics.registry, cfg.metrics.host, cfg.metrics.port)
        mount_health(server.server, service)
        log.info(
            "metrics on %s; health on http://%s:%d/healthz and /readyz",
            server.url,
            server.host,
            server.port,
        )
    dash_state = dash_server = None
    try:
        if cfg.dashboard is not None and cfg.dashboard.enabled:
            dash_state = DashboardState.for_pack(
                service.pack,
                max_calls=cfg.dashboard.max_calls,
                max_alerts=cfg.dashboard.max_alerts,
            )
            fanout.sinks.append(("dashboard", DashboardSink(dash_state)))
            dash_server = start_dashboard(
                dash_state,
                cfg.dashboard.host,
                cfg.dashboard.port,
                cfg.dashboard.token_value(),
                viewer_token=cfg.dashboard.viewer_token_value(),
                users=cfg.dashboard.users,
                audit_log=cfg.dashboard.audit_log,
                session_idle_s=cfg.dashboard.session_idle_s,
                session_max_s=cfg.dashboard.session_max_s,
                secure_cookie=cfg.dashboard.secure_cookie,
                title=cfg.dashboard.title,
                limits=cfg.dashboard.limits,
                recordings=service.recording_lookup(),
                # history, acks and the review queue: the dashboard's store, else the one
                # serve writes its ended calls to; reviews rescore with serve's own pack
                store=cfg.dashboard.store or cfg.store,
                review_pack=service.pack,
                acks_keep_days=cfg.retention.scorecards,  # alerts are scorecard data
            )
            log.info("dashboard on %s", dash_server.url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await service.start()
            print("ready", *_endpoints(service), flush=True)  # noqa: T201 - for supervisors/tests
            await stop.wait()
            log.info("signal received: draining %d call(s)", len(service.sessions))
        finally:
            await service.shutdown()
    finally:
        if dash_state is not None:
            dash_state.close()
        if dash_server is not None:
            dash_server.stop()
        if server is not None:
            server.stop()
    return 0


def _endpoints(service: object) -> list[str]:
    out = []
    for src in getattr(service, "sources", ()):
        port = getattr(src, "bound_port", None)
        if port is not None:
            out.append(f"{src.name}={port}")
    return out
