"""``qa-pipeline notify test``: send a test message through every configured notifier.

Mount in ``qa_pipeline/cli.py``::

    from .notify.cli import notify_app
    app.add_typer(notify_app, name="notify")
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

notify_app = typer.Typer(help="Supervisor notifications (webhook, WeCom, DingTalk, e-mail).")


@notify_app.command("test")
def notify_test_command(
    config: Annotated[
        Path, typer.Argument(help="YAML with a notify: section (or just its content)")
    ],
) -> None:
    """Send one test message through each notifier (once, no retries); exit 1 on a failure."""
    from ..cli_errors import fail
    from ..errors import QAError
    from .config import load_notify_config
    from .message import sample_notification
    from .notifiers import NotifyError, build_notifier

    try:
        cfg = load_notify_config(config)
    except QAError as e:
        fail(e)
    if not cfg.notifiers:
        typer.echo(f"error: {config}: no notifiers configured", err=True)
        raise typer.Exit(2)
    failed = 0
    for name, c in zip(cfg.names(), cfg.notifiers, strict=True):
        ch = build_notifier(c)
        try:
            ch.send(sample_notification())
        except NotifyError as e:
            failed += 1
            typer.echo(f"{name}: FAILED ({e})")
        else:
            typer.echo(f"{name}: ok")
    raise typer.Exit(1 if failed else 0)
