"""Log lines: JSON objects (one per line, traceback inside) or text, naming call and peer."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest

from qa_pipeline.logs import LOG_CALL, LOG_PEER, setup_logging


@pytest.fixture()
def captured():  # type: ignore[no-untyped-def]
    buf = io.StringIO()
    root = logging.getLogger()
    level = root.level
    yield lambda fmt: setup_logging("debug", fmt, stream=buf) or buf
    for h in list(root.handlers):
        if type(h).__name__ == "_StderrHandler":
            root.removeHandler(h)
    root.setLevel(level)


def test_json_lines_name_call_and_peer_from_context_and_extra(captured) -> None:  # type: ignore[no-untyped-def]
    buf = captured("json")
    log = logging.getLogger("qa_pipeline.test")

    async def connection(peer: str, call: str) -> None:  # each connection its own task
        LOG_PEER.set(peer)
        await asyncio.sleep(0)
        LOG_CALL.set(call)
        log.info("frame from %s", peer)
        try:
            raise ValueError("bad\nframe")
        except ValueError:
            log.exception("closing")

    async def main() -> None:
        await asyncio.gather(connection("10.0.0.1:5000", "a"), connection("10.0.0.2:6000", "b"))

    asyncio.run(main())
    log.warning("outside", extra={"call_id": "z", "peer": "[::1]:9"})
    docs = [json.loads(x) for x in buf.getvalue().splitlines()]
    docs = [d for d in docs if d["logger"] == "qa_pipeline.test"]
    assert len(docs) == 5  # a traceback stays inside its line
    frames = {d["call_id"]: d["peer"] for d in docs if d["msg"].startswith("frame")}
    assert frames == {"a": "10.0.0.1:5000", "b": "10.0.0.2:6000"}
    closing = [d for d in docs if d["msg"] == "closing"]
    assert all("ValueError: bad" in d["exc"] and d["level"] == "error" for d in closing)
    assert docs[-1] == {**docs[-1], "call_id": "z", "peer": "[::1]:9", "level": "warning"}


def test_text_lines_and_levels(captured) -> None:  # type: ignore[no-untyped-def]
    buf = captured("text")
    log = logging.getLogger("qa_pipeline.test")
    log.info("plain")
    log.info("about a call", extra={"call_id": "c1", "peer": "127.0.0.1:4"})
    setup_logging("warning", stream=buf)
    log.info("hidden")
    log.warning("shown")
    assert buf.getvalue().splitlines() == [
        "INFO qa_pipeline.test: plain",
        "INFO qa_pipeline.test: about a call [call=c1 peer=127.0.0.1:4]",
        "WARNING qa_pipeline.test: shown",
    ]
    with pytest.raises(ValueError, match="log level"):
        setup_logging("loud")
