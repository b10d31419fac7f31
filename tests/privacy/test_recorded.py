"""A recorded call in which the customer reads out personal numbers, end to end through the
command line (``score --json`` with the JSONL sink and the store, ``transcribe --json``),
with a scripted decoder (no model): no output file, store row, stdout line or log record
holds a run of five of their digits; the scorecard of the rules that do not read numbers is
the one the raw text gives; an ``entity: mobile`` rule still fires."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from audio_helpers import read_clip, write_call
from typer.testing import CliRunner

from qa_pipeline.asr.bias import bias_version, told_terms
from qa_pipeline.asr.engine import AsrResult
from qa_pipeline.messages import SpeechSegment
from qa_pipeline.store import asr_settings
from qa_pipeline.testing import FakeDecoder

from .conftest import SAID, SENTENCE, files_under, leaks, sqlite_rows

ROOT = Path(__file__).resolve().parents[2]
AGENT_TEXT = "您好，华夏客服，请问有什么可以帮您？"
CALLER = "+86 139-1234-5678"  # what a telephony platform's sidecar says
PRIVACY_RULES = """\
rules:
  - id: PRIV-MOBILE-GIVEN
    description: 客户留下了手机号
    severity: minor
    weight: 1
    require: {role: customer, entity: mobile}
  - id: PRIV-MOBILE-SAID
    description: 通话中出现手机号（测试规则）
    severity: minor
    weight: 1
    forbid: {role: customer, entity: phone}
"""


class ScriptedEngine:
    """Stands in for the ASR engine: the agent greets, the customer reads ``said`` out."""

    def __init__(self, config: Any, bias: tuple[str, ...] = (), customer: str = "") -> None:
        self.config = config.model_copy(update={"verify": False})
        self.settings = asr_settings(config)
        self.bias = bias
        self.decoder = FakeDecoder(
            lambda s, _: AGENT_TEXT if s.role.value == "agent" else customer, confidence=0.9
        )

    @property
    def provenance(self) -> dict[str, object]:
        return {"bias_version": bias_version(told_terms(self.config, self.bias))}

    def with_bias(self, bias: tuple[str, ...]) -> ScriptedEngine:
        self.bias = bias
        return self

    def transcribe_many(
        self, segments: Iterable[SpeechSegment], on_result: Any = None
    ) -> Iterator[AsrResult]:
        yield from self.decoder.transcribe_many(segments, on_result)


@pytest.fixture(scope="module")
def call_file(speech_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("call")
    path = d / "call-pii.wav"
    write_call(
        path,
        [
            (0, 0.5, read_clip(speech_dir, "zh/aishell1_BAC009S0764W0121.wav")),
            (1, 5.6, read_clip(speech_dir, "zh/paddlespeech_zh.wav")),
        ],
        12.0,
    )
    side = {"call": {"call_id": "call-pii", "agent_id": "A07", "metadata": {"caller": CALLER}}}
    path.with_suffix(".json").write_text(json.dumps(side), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default pack and two rules that read the customer's numbers."""
    d = tmp_path_factory.mktemp("pack") / "rules"
    shutil.copytree(ROOT / "configs" / "rules", d)
    (d / "privacy.yaml").write_text(PRIVACY_RULES, encoding="utf-8")
    return d


def _run(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    out: Path,
    args: list[str],
    kinds: list[str],
    redact: bool = True,
) -> str:
    import qa_pipeline.pipeline as pipeline_mod
    from qa_pipeline.cli import app

    customer = "，".join(SENTENCE[k] for k in kinds)
    monkeypatch.setattr(
        pipeline_mod,
        "AsrEngine",
        lambda config, bias=(): ScriptedEngine(config, bias, customer),
    )
    cfg = out / "config.yaml"
    cfg.write_text(
        json.dumps(
            {
                "sinks": {"jsonl": {"directory": str(out / "events")}},
                "privacy": {"redact": redact},
            }
        ),
        encoding="utf-8",
    )
    caplog.set_level(logging.DEBUG)
    res = CliRunner().invoke(app, [*args, "-c", str(cfg), "--quiet"])
    assert res.exit_code == 0, res.output
    return res.stdout


def _verdicts(doc: dict[str, Any]) -> dict[str, str]:
    return {v["rule_id"]: v["verdict"] for v in doc["verdicts"]}


@pytest.mark.parametrize(
    "kinds",
    [
        ["mobile"],
        ["mobile", "id_number", "bank_card"],
    ],
)
def test_no_digits_reach_any_output(
    kinds: list[str],
    call_file: Path,
    pack_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    numbers = [SAID[k] for k in kinds] + [CALLER]
    out = tmp_path / "out"
    out.mkdir()
    store = out / "qa-store.sqlite"
    score = [
        "score", str(call_file), "--rules", str(pack_dir), "--json", "--store", str(store),
    ]  # fmt: skip
    first = _run(monkeypatch, caplog, out, score, kinds)
    again = _run(monkeypatch, caplog, out, score, kinds)  # the stored transcript, reused
    shown = _run(monkeypatch, caplog, out, ["transcribe", str(call_file), "--json"], kinds)
    doc, doc2 = json.loads(first), json.loads(again)
    assert not doc["stats"]["cached"] and doc2["stats"]["cached"]
    texts = [("score --json", first), ("score --json (cached)", again), ("transcribe", shown)]
    texts += files_under(out) + sqlite_rows(store)
    texts += [(f"log {r.name}", r.getMessage()) for r in caplog.records]
    assert not leaks(texts, numbers)
    assert (out / "events").is_dir() and list((out / "events").glob("*.jsonl"))

    # what the customer said, as the outputs have it: masks and their spans
    (cust,) = [u for u in doc["utterances"] if u["role"] == "customer"][:1]
    assert "[手机号]" in cust["text"] and "[手机号]" in cust["raw_text"]
    spans = cust["entities"]
    assert [s["kind"] for s in spans] == kinds
    assert all(cust["text"][s["start"] : s["end"]].startswith("[") for s in spans)
    assert doc["call"]["metadata"]["caller"] == "[手机号]"
    assert doc2["utterances"] == doc["utterances"]

    # the entity rules read the spans; the others give what the raw text gives
    got = _verdicts(doc)
    assert got["PRIV-MOBILE-GIVEN"] == "passed" and got["PRIV-MOBILE-SAID"] == "failed"
    (finding,) = [f for f in doc["findings"] if f["rule_id"] == "PRIV-MOBILE-SAID"]
    assert finding["evidence"][0]["matched"] == "手机号"
    raw_out = tmp_path / "raw"
    raw_out.mkdir()
    raw = json.loads(
        _run(
            monkeypatch,
            caplog,
            raw_out,
            ["score", str(call_file), "--rules", str(pack_dir), "--json", "--no-store"],
            kinds,
            redact=False,
        )
    )
    assert SAID["mobile"] in json.dumps(raw, ensure_ascii=False)  # privacy.redact: false
    want = {k: v for k, v in _verdicts(raw).items() if not k.startswith("PRIV-")}
    assert {k: v for k, v in got.items() if not k.startswith("PRIV-")} == want
