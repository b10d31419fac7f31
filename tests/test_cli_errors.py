"""A user's mistake is one ``error:`` line per problem and exit status 2, in every command
(each run as a real process), never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("QA_TEST_UNSET_SECRET", None)
    return subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=full_env,
    )


def one_error_line(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1, proc.stderr
    line = lines[0]
    assert line.startswith("error: "), line
    for part in expected:
        assert part in line, line
    return line


@pytest.fixture()
def configs(tmp_path: Path) -> dict[str, Path]:
    files: dict[str, str | bytes] = {
        "unknown": "asr:\n  beam_size: 5\n  bogus_key: 1\n",
        "binary": b"\xff\xfe\x00\x01 not yaml",
        "unset_env": "sinks:\n  kafka:\n    bootstrap_servers: [localhost:1]\n"
        "    sasl_plain_password: ${QA_TEST_UNSET_SECRET}\n",
        "bad_sink": "sinks:\n  jsonl: {directory: /dev/null/events}\n",
        "bad_pack": f"rules: {{pack: {tmp_path / 'no-such-pack.yaml'}}}\n",
    }
    out = {}
    for name, text in files.items():
        p = tmp_path / f"{name}.yaml"
        if isinstance(text, bytes):
            p.write_bytes(text)
        else:
            p.write_text(text, encoding="utf-8")
        out[name] = p
    return out


def test_score(configs: dict[str, Path], tmp_path: Path) -> None:
    call = str(tmp_path / "call.wav")  # never read: the config is checked first
    c = configs
    one_error_line(run("score", call, "-c", str(c["unknown"])), "unknown.yaml:3", "bogus_key")
    one_error_line(run("score", call, "-c", str(c["binary"])), "binary.yaml", "UTF-8")
    one_error_line(
        run("score", call, "-c", str(c["unset_env"])),
        "unset_env.yaml:4",
        "sinks.kafka.sasl_plain_password",
        "QA_TEST_UNSET_SECRET is not set",
    )
    one_error_line(run("score", call, "-c", str(c["bad_sink"])), "/dev/null/events")
    one_error_line(run("score", call, "-c", str(c["bad_pack"])), "no-such-pack.yaml")


def test_serve(configs: dict[str, Path], tmp_path: Path) -> None:
    env = {"QA_MEDIA_TOKEN": "a-media-token-for-tests", "QA_DASHBOARD_TOKEN": ""}
    c = configs
    one_error_line(run("serve", "-c", str(c["unknown"]), env=env), "unknown.yaml:3", "bogus_key")
    one_error_line(run("serve", "-c", str(c["unset_env"]), env=env), "QA_TEST_UNSET_SECRET")
    # checked before anything starts: the sinks, the pack, the dashboard's token
    one_error_line(run("serve", "-c", str(c["bad_sink"]), env=env), "/dev/null/events")
    one_error_line(run("serve", "-c", str(c["bad_pack"]), env=env), "no-such-pack.yaml")
    dash = tmp_path / "dash.yaml"
    dash.write_text("dashboard: {port: 0}\nmetrics: {enabled: false}\n", encoding="utf-8")
    one_error_line(run("serve", "-c", str(dash), env=env), "dashboard needs users or an API key")
    # the media token missing (auth: token is the default)
    one_error_line(
        run("serve", "-c", str(c["bad_pack"]), env={"QA_MEDIA_TOKEN": ""}), "QA_MEDIA_TOKEN"
    )


def test_rescore(configs: dict[str, Path], tmp_path: Path) -> None:
    base = ["rescore", "-s", str(tmp_path / "s.sqlite"), "-o", str(tmp_path / "o"), "-q"]
    one_error_line(run(*base, "-c", str(configs["unknown"])), "bogus_key")
    one_error_line(run(*base, "-c", str(configs["bad_pack"])), "no-such-pack.yaml")
    one_error_line(run(*base, str(tmp_path / "missing-dir")), "missing-dir", "does not exist")


def test_dashboard(configs: dict[str, Path]) -> None:
    env = {"QA_DASHBOARD_TOKEN": "a-dashboard-token"}
    base = ["dashboard", "--port", "0", "--kafka", "127.0.0.1:1"]
    one_error_line(run(*base, "-c", str(configs["unknown"]), env=env), "bogus_key")
    one_error_line(run(*base, "-c", str(configs["unset_env"]), env=env), "QA_TEST_UNSET_SECRET")
    one_error_line(run("dashboard", "--port", "0", env=env), "--kafka")
    one_error_line(run(*base[:1], "--port", "99999", *base[3:], env=env), "99999")
    one_error_line(run(*base, env={"QA_DASHBOARD_TOKEN": ""}), "needs users or an API key")


def test_rules(tmp_path: Path) -> None:
    bad = tmp_path / "pack.yaml"
    bad.write_text(
        'name: x\nversion: "1"\nrules:\n  - id: A\n    description: d\n    severity: major\n'
        "    weight: 5\n    require: {keyword: [您好]}\n    bogus: 1\n",
        encoding="utf-8",
    )
    one_error_line(run("rules", "test", str(bad)), "pack.yaml:9", "bogus")
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    one_error_line(run("rules", "test", str(binary)), "UTF-8")
    one_error_line(run("rules", "test", str(tmp_path / "none")), "none")
    one_error_line(run("rules", "lint", str(tmp_path / "none")), "none")


def test_notify_and_logging_options(tmp_path: Path) -> None:
    cfg = tmp_path / "notify.yaml"
    cfg.write_text(
        "notify:\n  notifiers:\n    - {type: smtp, host: h, from: a@b.c, to: [x@y.z],\n"
        "       user: u, password: '${QA_TEST_UNSET_SECRET}'}\n",
        encoding="utf-8",
    )
    one_error_line(run("notify", "test", str(cfg)), "notify.yaml:4", "QA_TEST_UNSET_SECRET")
    one_error_line(run("--log-level", "loud", "rules", "lint"), "log level")
    one_error_line(run("--log-format", "xml", "rules", "lint"), "log format")
