"""``qa-pipeline serve``: run the live service from a config file until SIGTERM/SIGINT.

Mount it in ``qa_pipeline/cli.py`` with::

    from .live.cli import serve_command
    app.command("serve")(serve_command)

Exit codes: 0 after a clean drain, 2 for a config error, 1 when the service could not start
(model, port in use, ...).
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
) -> None:
    """Run the live-call service: sources -> VAD -> shared Whisper -> rules -> sinks."""
    from .config import DeviceSourceConfig, load_serve_config

    try:
        cfg = load_serve_config(config)
    except QAError as e:
        typer.echo(str(e), err=True)
        raise typer.Exit(2) from None
    updates: dict[str, object] = {}
    if device is not None:
        updates["sources"] = (*cfg.sources, DeviceSourceConfig(device=device))
    if metrics_port is not None:
        updates["metrics"] = cfg.metrics.model_copy(update={"port": metrics_port})
    if updates:
        cfg = cfg.model_copy(update=updates)
    try:
        code = asyncio.run(run_service(cfg))
    except QAError as e:
        typer.echo(f"cannot start: {e}", err=True)
        raise typer.Exit(1) from None
    except (ImportError, OSError) as e:
        typer.echo(f"cannot start: {e}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


async def run_service(cfg: object) -> int:
    """Start the service, wait for SIGTERM/SIGINT, drain; returns the exit code."""
    from prometheus_client import CollectorRegistry

    from ..dashboard import DashboardSink, DashboardState, start_dashboard
    from ..metrics import start_metrics_server
    from ..notify import NotifierSink
    from ..sinks import build_sinks
    from .config import ServeConfig
    from .metrics import LiveMetrics
    from .service import LiveService

    assert isinstance(cfg, ServeConfig)
    metrics = LiveMetrics(CollectorRegistry())
    server = None
    if cfg.metrics.enabled:
        server = start_metrics_server(metrics.registry, cfg.metrics.host, cfg.metrics.port)
        log.info("metrics on %s", server.url)
    fanout = build_sinks(cfg.sinks, metrics)
    if cfg.notify is not None and cfg.notify.notifiers:
        fanout.sinks.append(
            ("notify", NotifierSink(cfg.notify, registry=metrics.registry, observer=metrics))
        )
    service = LiveService(cfg, metrics=metrics, sinks=fanout)
    dash_state = dash_server = None
    if cfg.dashboard is not None and cfg.dashboard.enabled:
        dash_state = DashboardState.for_pack(
            service.pack, max_calls=cfg.dashboard.max_calls, max_alerts=cfg.dashboard.max_alerts
        )
        fanout.sinks.append(("dashboard", DashboardSink(dash_state)))
        dash_server = start_dashboard(
            dash_state,
            cfg.dashboard.host,
            cfg.dashboard.port,
            cfg.dashboard.token_value(),
            viewer_token=cfg.dashboard.viewer_token_value(),
            title=cfg.dashboard.title,
            limits=cfg.dashboard.limits,
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
