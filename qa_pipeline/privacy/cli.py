"""``qa-pipeline redact``: text lines on stdin -> one redacted line each on stdout, so a team
can check the recognisers on its own data (mounted by ``qa_pipeline.cli``)."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from ..cli_errors import fail
from ..errors import ConfigError
from ..messages import to_dict
from .config import PrivacyConfig
from .redact import Redactor

MODES = ("label", "mask", "hash")


def redact_command(
    json_out: Annotated[
        bool,
        typer.Option(
            "--json",
            help="one JSON object per line: the redacted text and its spans (kind, start, "
            "end, digest, tail; never the raw value)",
        ),
    ] = False,
    mode: Annotated[
        str, typer.Option(help="label ([手机号]), mask (*), or hash (keyed, needs the key)")
    ] = "label",
    keep_last: Annotated[
        int, typer.Option("--keep-last", min=0, max=4, help="digits of a number left visible")
    ] = 0,
    key_env: Annotated[
        str, typer.Option("--key-env", help="environment variable holding the hash key")
    ] = "QA_PIPELINE_PRIVACY_KEY",
) -> None:
    """Redact personal data (phone, ID and card numbers, e-mail, codes, addresses) in text
    lines read from stdin."""
    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r}: one of {', '.join(MODES)}", param_hint="--mode")
    try:
        redactor = Redactor(
            PrivacyConfig.model_validate({"mode": mode, "keep_last": keep_last, "key_env": key_env})
        )
    except ConfigError as e:
        fail(e)
    out = sys.stdout
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        if not json_out:
            out.write(redactor.text(text) + "\n")
            continue
        r = redactor.redact(text)
        doc = {"text": r.text, "spans": to_dict(r.spans)}
        out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    out.flush()
