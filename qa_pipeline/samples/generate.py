"""Render the scenarios of ``scenarios.yaml`` into dual-channel 8 kHz sample calls.

Each turn is spoken by ``espeak-ng -v cmn-latn-pinyin`` (the plain ``cmn`` voice reads
Chinese as English letters; ``cmn-latn-pinyin`` takes Chinese characters, or pinyin with
tone numbers, and must run under a UTF-8 locale), converted to the call's rate by ``sox``,
trimmed to where the speech is, levelled, and placed on its role's channel (0 = agent,
1 = customer) at its scenario time. Both channels carry low-level line noise so neither is
digital silence. Next to ``<id>.wav`` goes ``<id>.json``: the ``call`` metadata the
pipeline reads, the real turn times and the expected rule verdicts.

A call is regenerated only when its inputs change (the scenario, the voices, the rate and
encoding, :data:`GENERATOR_VERSION`); the inputs' hash is kept in the sidecar.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soundfile as sf
import yaml

from ..errors import ConfigError, Location, QAError
from ..messages import Direction, Role

GENERATOR_VERSION = "2"  # 2: sox -R (repeatable dither)
"""Bump when a change to this module changes the audio: every cached call is redone."""

ESPEAK_VOICE = "cmn-latn-pinyin"
CHANNEL_ROLES: tuple[Role, Role] = (Role.AGENT, Role.CUSTOMER)
ENCODINGS: Mapping[str, str] = {"ulaw": "ULAW", "alaw": "ALAW", "pcm16": "PCM_16"}
NOISE_DBFS = -60.0
DEFAULT_LEAD_IN = 1.0
DEFAULT_TAIL = 1.0
COMPANY = "华冠"

ProgressFn = Callable[[str, int, int], None]
"""progress(scenario_id, done, total), called after each call is written or found cached."""

Audio = npt.NDArray[np.float32]


class SampleError(QAError):
    """A sample call cannot be generated (missing tool, bad scenario, synthesis failure)."""


@dataclass(frozen=True, slots=True)
class Voice:
    """espeak-ng settings for one speaker.

    ``variant`` is an espeak-ng voice variant (``+f3``...), ``speed`` words (here:
    syllables) per minute, ``pitch`` 0-99, ``word_gap`` pause between words in 10 ms
    units, ``level_dbfs`` the RMS level the rendered speech is scaled to.
    """

    variant: str
    speed: int
    pitch: int
    word_gap: int = 0
    level_dbfs: float = -20.0

    def espeak_args(self) -> list[str]:
        return [
            "-v",
            f"{ESPEAK_VOICE}+{self.variant}" if self.variant else ESPEAK_VOICE,
            "-s",
            str(self.speed),
            "-p",
            str(self.pitch),
            "-g",
            str(self.word_gap),
        ]


# Chosen by measuring Whisper base's character error rate on espeak-ng renderings of the
# scenarios' phrases at 8 kHz mu-law (see verify.py): the female variants
# are recognised far better than the default male voice; f3 and f2 were the best two.
# The roles differ in variant, pitch, speed and level so the two sides sound different.
ROLE_VOICES: Mapping[Role, Voice] = {
    Role.AGENT: Voice(variant="f3", speed=140, pitch=50, level_dbfs=-20.0),
    Role.CUSTOMER: Voice(variant="f2", speed=150, pitch=25, level_dbfs=-22.0),
}


@dataclass(frozen=True, slots=True)
class Turn:
    """One turn of a scenario: who speaks, what, and when.

    Exactly one of ``at`` (absolute start, seconds) and ``gap`` (seconds after the
    previous turn's end; negative = talk-over) is set, except for a first turn that has
    neither (it starts after the scenario's ``lead_in``). ``say`` replaces ``text`` as
    espeak-ng's input; ``speed``/``pitch``/``variant`` override the role's voice.
    """

    role: Role
    text: str
    at: float | None = None
    gap: float | None = None
    say: str | None = None
    speed: int | None = None
    pitch: int | None = None
    variant: str | None = None

    @property
    def fingerprint(self) -> str:
        """Identifies what is spoken and by whom (key of the tuning table)."""
        return hashlib.sha1(f"{self.role}\n{self.say or self.text}".encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class Scenario:
    id: str
    description: str
    call: Mapping[str, Any]
    turns: tuple[Turn, ...]
    expect: Mapping[str, str]
    lead_in: float = DEFAULT_LEAD_IN
    tail: float = DEFAULT_TAIL
    source: Mapping[str, Any] | None = None  # the scenario as written, for the cache hash


@dataclass(frozen=True, slots=True)
class RenderedTurn:
    turn: Turn
    channel: int
    start: float
    end: float


# -- scenarios ---------------------------------------------------------------------------


def default_scenarios_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("scenarios.yaml")))


def default_tuning_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("tuning.yaml")))


_TURN_KEYS = {"role", "text", "at", "gap", "say", "speed", "pitch", "variant"}
_SCENARIO_KEYS = {"id", "description", "call", "turns", "expect", "lead_in", "tail"}
_CALL_KEYS = {"started_at", "direction", "agent_id", "company"}


def load_scenarios(path: str | Path | None = None) -> list[Scenario]:
    """Read and check a scenarios file (default: the bundled one). All problems at once."""
    p = Path(path) if path is not None else default_scenarios_path()
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError([(Location(str(p)), f"cannot read scenarios: {e}")]) from e
    if not isinstance(doc, list):
        raise ConfigError([(Location(str(p)), "scenarios file must be a list of scenarios")])
    problems: list[tuple[Location, str]] = []
    out: list[Scenario] = []
    seen: set[str] = set()
    for i, raw in enumerate(doc):
        where = Location(str(p))
        errs: list[str] = []
        sc = _parse_scenario(raw, i, errs)
        name = raw.get("id", f"#{i}") if isinstance(raw, dict) else f"#{i}"
        problems.extend((where, f"scenario {name}: {e}") for e in errs)
        if sc is None:
            continue
        if sc.id in seen:
            problems.append((where, f"scenario {sc.id}: duplicate id"))
        seen.add(sc.id)
        out.append(sc)
    if problems:
        raise ConfigError(problems)
    return out


def _parse_scenario(raw: Any, index: int, errs: list[str]) -> Scenario | None:
    if not isinstance(raw, dict):
        errs.append(f"entry {index} is not a mapping")
        return None
    for k in sorted(set(raw) - _SCENARIO_KEYS):
        errs.append(f"unknown key {k!r}")
    sid = raw.get("id")
    if not isinstance(sid, str) or not sid or not sid.replace("_", "").replace("-", "").isalnum():
        errs.append("'id' must be a non-empty name of letters, digits, '_' or '-'")
        sid = f"#{index}"
    call = raw.get("call") or {}
    if not isinstance(call, dict):
        errs.append("'call' must be a mapping")
        call = {}
    for k in sorted(set(call) - _CALL_KEYS):
        errs.append(f"call: unknown key {k!r}")
    if "started_at" in call:
        try:
            datetime.fromisoformat(str(call["started_at"]))
        except ValueError:
            errs.append(f"call.started_at {call['started_at']!r} is not an ISO datetime")
    if "direction" in call and call["direction"] not in {d.value for d in Direction}:
        errs.append(f"call.direction must be inbound or outbound, not {call['direction']!r}")
    turns_raw = raw.get("turns")
    turns: list[Turn] = []
    if not isinstance(turns_raw, list) or not turns_raw:
        errs.append("'turns' must be a non-empty list")
        turns_raw = []
    for j, t in enumerate(turns_raw):
        turn = _parse_turn(t, j, errs)
        if turn is not None:
            turns.append(turn)
    expect = raw.get("expect") or {}
    if not isinstance(expect, dict) or any(v not in ("fire", "ok") for v in expect.values()):
        errs.append("'expect' must map rule ids to 'fire' or 'ok'")
        expect = {}
    lead_in, tail = raw.get("lead_in", DEFAULT_LEAD_IN), raw.get("tail", DEFAULT_TAIL)
    for name, v in (("lead_in", lead_in), ("tail", tail)):
        if not isinstance(v, int | float) or v < 0:
            errs.append(f"'{name}' must be a number >= 0")
    if errs:
        return None
    return Scenario(
        id=str(sid),
        description=str(raw.get("description", "")).strip(),
        call=dict(call),
        turns=tuple(turns),
        expect={str(k): str(v) for k, v in expect.items()},
        lead_in=float(lead_in),
        tail=float(tail),
        source=raw,
    )


def _parse_turn(t: Any, j: int, errs: list[str]) -> Turn | None:
    if not isinstance(t, dict):
        errs.append(f"turn {j} is not a mapping")
        return None
    n = len(errs)
    for k in sorted(set(t) - _TURN_KEYS):
        errs.append(f"turn {j}: unknown key {k!r}")
    if t.get("role") not in (Role.AGENT.value, Role.CUSTOMER.value):
        errs.append(f"turn {j}: role must be agent or customer")
    text = t.get("text")
    if not isinstance(text, str) or not text.strip():
        errs.append(f"turn {j}: 'text' must be non-empty")
    has_at, has_gap = t.get("at") is not None, t.get("gap") is not None
    if has_at and has_gap:
        errs.append(f"turn {j}: give 'at' or 'gap', not both")
    if not has_at and not has_gap and j > 0:
        errs.append(f"turn {j}: needs timing: 'at' (seconds) or 'gap' (seconds after previous)")
    for k in ("at", "gap"):
        if t.get(k) is not None and not isinstance(t[k], int | float):
            errs.append(f"turn {j}: '{k}' must be a number")
    if has_at and isinstance(t["at"], int | float) and t["at"] < 0:
        errs.append(f"turn {j}: 'at' must be >= 0")
    for k, lo, hi in (("speed", 80, 450), ("pitch", 0, 99)):
        v = t.get(k)
        if v is not None and (not isinstance(v, int) or not lo <= v <= hi):
            errs.append(f"turn {j}: '{k}' must be an integer in {lo}..{hi}")
    if t.get("variant") is not None and not str(t["variant"]).replace("_", "").isalnum():
        errs.append(f"turn {j}: 'variant' must be an espeak-ng variant name such as f3")
    if len(errs) > n:
        return None
    return Turn(
        role=Role(t["role"]),
        text=str(text).strip(),
        at=float(t["at"]) if has_at else None,
        gap=float(t["gap"]) if has_gap else None,
        say=str(t["say"]) if t.get("say") else None,
        speed=t.get("speed"),
        pitch=t.get("pitch"),
        variant=str(t["variant"]) if t.get("variant") is not None else None,
    )


Tuning = Mapping[str, Mapping[str, Any]]
"""Per-turn voice overrides: fingerprint -> {variant?, speed?, pitch?}."""


def load_tuning(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """Per-turn voice overrides found by ``python -m qa_pipeline.samples.verify --tune``.

    Keyed by :attr:`Turn.fingerprint`; each entry may set ``variant``, ``speed``, ``pitch``.
    """
    p = Path(path) if path is not None else default_tuning_path()
    if not p.is_file():
        return {}
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError([(Location(str(p)), f"cannot read voice tuning: {e}")]) from e
    turns = doc.get("turns") or {}
    out: dict[str, dict[str, Any]] = {}
    for k, v in turns.items():
        if not isinstance(v, dict):
            continue
        entry: dict[str, Any] = {f: int(v[f]) for f in ("speed", "pitch") if f in v}
        if v.get("variant") is not None:
            entry["variant"] = str(v["variant"])
        out[str(k)] = entry
    return out


def voice_for(turn: Turn, tuning: Tuning | None = None) -> Voice:
    """The role's voice, then the tuning table's override, then the turn's own."""
    voice = ROLE_VOICES[turn.role]
    tuned = (tuning or {}).get(turn.fingerprint, {})
    voice = replace(
        voice,
        variant=str(tuned.get("variant", voice.variant)),
        speed=int(tuned.get("speed", voice.speed)),
        pitch=int(tuned.get("pitch", voice.pitch)),
    )
    if turn.variant is not None:
        voice = replace(voice, variant=turn.variant)
    if turn.speed is not None:
        voice = replace(voice, speed=turn.speed)
    if turn.pitch is not None:
        voice = replace(voice, pitch=turn.pitch)
    return voice


# -- tools -------------------------------------------------------------------------------


def _utf8_env() -> dict[str, str]:
    # espeak-ng decodes its input by the locale: without UTF-8 Chinese becomes noise.
    env = dict(os.environ)
    env["LC_ALL"] = "C.UTF-8"
    env["LANG"] = "C.UTF-8"
    return env


@functools.lru_cache(maxsize=1)
def check_tools() -> str:
    """Check espeak-ng (with the Mandarin pinyin voice) and sox; return espeak's version."""
    missing = [
        f"{tool} (apt-get install {pkg})"
        for tool, pkg in (("espeak-ng", "espeak-ng"), ("sox", "sox"))
        if shutil.which(tool) is None
    ]
    if missing:
        raise SampleError(
            "generating sample calls needs " + " and ".join(missing) + "; on Debian/Ubuntu: "
            "sudo apt-get install -y espeak-ng sox"
        )
    try:
        voices = subprocess.run(
            ["espeak-ng", "--voices=cmn"],
            env=_utf8_env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        version = subprocess.run(
            ["espeak-ng", "--version"],
            env=_utf8_env(),
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as e:
        raise SampleError(f"espeak-ng does not run: {e}") from e
    if ESPEAK_VOICE not in voices:
        raise SampleError(
            f"espeak-ng has no '{ESPEAK_VOICE}' voice (its Mandarin data is missing); "
            "install the full package: apt-get install espeak-ng espeak-ng-data"
        )
    return version.split("  Data at")[0].strip()


# -- rendering ---------------------------------------------------------------------------


def render_speech(text: str, voice: Voice, rate: int = 8000) -> Audio:
    """Speak ``text`` with espeak-ng, convert to ``rate`` with sox; trimmed float32 mono."""
    check_tools()
    with tempfile.TemporaryDirectory(prefix="qa-sample-") as tmp:
        raw, conv = Path(tmp, "espeak.wav"), Path(tmp, "turn.wav")
        try:
            subprocess.run(
                ["espeak-ng", *voice.espeak_args(), "-w", str(raw), "--", text],
                env=_utf8_env(),
                capture_output=True,
                check=True,
                timeout=60,
            )
            subprocess.run(
                ["sox", "-R", "-q", str(raw), "-r", str(rate), "-c", "1", "-b", "16", str(conv)],
                capture_output=True,
                check=True,
                timeout=60,
            )
        except subprocess.CalledProcessError as e:
            err = (e.stderr or b"").decode("utf-8", "replace").strip()
            raise SampleError(f"{e.cmd[0]} failed on {text!r}: {err or e}") from e
        except subprocess.TimeoutExpired as e:
            raise SampleError(f"{e.cmd[0]} timed out on {text!r}") from e
        audio, got_rate = sf.read(conv, dtype="float32", always_2d=False)
    if got_rate != rate or audio.ndim != 1 or audio.size == 0:
        raise SampleError(f"espeak-ng/sox produced no usable audio for {text!r}")
    audio = _trim(np.asarray(audio, dtype=np.float32), rate)
    if audio.size == 0:
        raise SampleError(f"espeak-ng produced silence for {text!r}")
    return _level(audio, voice.level_dbfs)


def _trim(audio: Audio, rate: int, frame_ms: int = 5, rel_db: float = -40.0) -> Audio:
    """Cut leading/trailing silence: keep from the first to the last frame whose RMS is
    within ``rel_db`` of the loudest frame."""
    n = max(1, rate * frame_ms // 1000)
    frames = audio[: len(audio) // n * n].reshape(-1, n)
    if frames.size == 0:
        return audio
    rms = np.sqrt(np.mean(np.square(frames, dtype=np.float64), axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (rel_db / 20.0))
    if loud.size == 0 or rms.max() == 0:
        return audio[:0]
    return audio[loud[0] * n : (loud[-1] + 1) * n]


def _level(audio: Audio, level_dbfs: float, peak: float = 0.89) -> Audio:
    rms = float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))
    gain = 10 ** (level_dbfs / 20.0) / rms if rms > 0 else 1.0
    top = float(np.max(np.abs(audio))) * gain
    if top > peak:
        gain *= peak / top
    return (audio * gain).astype(np.float32)


def layout(scenario: Scenario, durations: Sequence[float]) -> list[RenderedTurn]:
    """Place turns on the call clock from their ``at``/``gap`` and real durations."""
    placed: list[RenderedTurn] = []
    prev_end = 0.0
    channel_end = [0.0, 0.0]
    for i, (turn, dur) in enumerate(zip(scenario.turns, durations, strict=True)):
        if turn.at is not None:
            start = turn.at
        elif turn.gap is not None and placed:
            start = prev_end + turn.gap
        else:
            start = scenario.lead_in
        start = max(0.0, start)
        ch = CHANNEL_ROLES.index(turn.role)
        if placed and start < channel_end[ch] - 1e-9:
            raise SampleError(
                f"scenario {scenario.id}: turn {i} ({turn.role}) starts at {start:.2f}s, "
                f"before the same speaker's previous turn ends ({channel_end[ch]:.2f}s)"
            )
        end = start + dur
        placed.append(RenderedTurn(turn, ch, start, end))
        prev_end = end
        channel_end[ch] = end
    return placed


def _noise(seed_text: str, n: int, channels: int) -> Audio:
    rng = np.random.default_rng(zlib.crc32(seed_text.encode()))
    sigma = 10 ** (NOISE_DBFS / 20.0)
    return rng.normal(0.0, sigma, size=(n, channels)).astype(np.float32)


def inputs_hash(
    scenario: Scenario,
    *,
    rate: int,
    encoding: str,
    tuning: Tuning | None = None,
) -> str:
    """Hash of everything that determines a call's audio and sidecar."""
    doc = {
        "generator": GENERATOR_VERSION,
        "rate": rate,
        "encoding": encoding,
        "scenario": scenario.source if scenario.source is not None else _scenario_doc(scenario),
        "voices": [
            [
                t.role.value,
                list(voice_for(t, tuning).espeak_args()),
                voice_for(t, tuning).level_dbfs,
            ]
            for t in scenario.turns
        ],
    }
    blob = json.dumps(doc, ensure_ascii=False, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _scenario_doc(sc: Scenario) -> dict[str, Any]:
    return {
        "id": sc.id,
        "description": sc.description,
        "call": dict(sc.call),
        "turns": [{k: getattr(t, k) for k in sorted(_TURN_KEYS)} for t in sc.turns],
        "expect": dict(sc.expect),
        "lead_in": sc.lead_in,
        "tail": sc.tail,
    }


def _cached(wav: Path, side: Path, digest: str) -> bool:
    if not (wav.is_file() and side.is_file()):
        return False
    try:
        doc = json.loads(side.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and doc.get("generator", {}).get("inputs_sha256") == digest


def _resolve(scenario: Scenario | str, scenarios: Iterable[Scenario] | None = None) -> Scenario:
    if isinstance(scenario, Scenario):
        return scenario
    pool = list(scenarios) if scenarios is not None else load_scenarios()
    for sc in pool:
        if sc.id == scenario:
            return sc
    raise SampleError(
        f"no scenario {scenario!r}; known: {', '.join(s.id for s in pool) or '(none)'}"
    )


def generate_call(
    scenario: Scenario | str,
    outdir: str | Path,
    *,
    rate: int = 8000,
    encoding: str = "ulaw",
    force: bool = False,
    tuning: Tuning | None = None,
) -> Path:
    """Write ``<outdir>/<id>.wav`` (2 channels) and ``<id>.json``; return the WAV path.

    Skips the work when both exist and were made from the same inputs (unless
    ``force``). ``tuning`` defaults to the bundled ``tuning.yaml``.
    """
    sc = _resolve(scenario)
    if encoding not in ENCODINGS:
        raise SampleError(f"encoding must be one of {', '.join(ENCODINGS)}, not {encoding!r}")
    if rate not in (8000, 16000):
        raise SampleError(f"rate must be 8000 or 16000 Hz, not {rate}")
    tuning = load_tuning() if tuning is None else tuning
    out = Path(outdir)
    wav, side = out / f"{sc.id}.wav", out / f"{sc.id}.json"
    digest = inputs_hash(sc, rate=rate, encoding=encoding, tuning=tuning)
    if not force and _cached(wav, side, digest):
        return wav
    espeak_version = check_tools()

    voices = [voice_for(t, tuning) for t in sc.turns]
    with ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1))) as pool:
        clips = list(
            pool.map(
                lambda tv: render_speech(tv[0].say or tv[0].text, tv[1], rate),
                zip(sc.turns, voices, strict=True),
            )
        )
    # Snap every start to the sample grid so the sidecar times are exact.
    durations = [len(c) / rate for c in clips]
    placed = layout(sc, durations)
    starts = [round(p.start * rate) for p in placed]
    total = max(s + len(c) for s, c in zip(starts, clips, strict=True)) + round(sc.tail * rate)
    mix = _noise(sc.id, total, len(CHANNEL_ROLES))
    for p, s, clip in zip(placed, starts, clips, strict=True):
        mix[s : s + len(clip), p.channel] += clip
    np.clip(mix, -1.0, 1.0, out=mix)

    out.mkdir(parents=True, exist_ok=True)
    tmp_wav = wav.with_name(f".{wav.name}.tmp")
    sf.write(tmp_wav, mix, rate, subtype=ENCODINGS[encoding], format="WAV")
    os.replace(tmp_wav, wav)

    call = {
        "call_id": sc.id,
        "started_at": str(sc.call["started_at"]) if sc.call.get("started_at") else None,
        "direction": str(sc.call.get("direction", Direction.INBOUND.value)),
        "agent_id": sc.call.get("agent_id"),
        "channels": [r.value for r in CHANNEL_ROLES],
        "metadata": {"scenario": sc.id, "company": str(sc.call.get("company", COMPANY))},
    }
    doc = {
        "call": call,
        "scenario": sc.id,
        "description": sc.description,
        "audio": {
            "file": wav.name,
            "sample_rate": rate,
            "encoding": encoding,
            "channels": [r.value for r in CHANNEL_ROLES],
            "duration": round(total / rate, 3),
        },
        "turns": [
            {
                "role": p.turn.role.value,
                "channel": p.channel,
                "text": p.turn.text,
                "start": round(s / rate, 3),
                "end": round((s + len(c)) / rate, 3),
            }
            for p, s, c in zip(placed, starts, clips, strict=True)
        ],
        "expect": dict(sc.expect),
        "generator": {
            "version": GENERATOR_VERSION,
            "inputs_sha256": digest,
            "espeak_ng": espeak_version,
            "voices": [
                {"role": t.role.value, "args": v.espeak_args(), "level_dbfs": v.level_dbfs}
                for t, v in zip(sc.turns, voices, strict=True)
            ],
        },
    }
    tmp_side = side.with_name(f".{side.name}.tmp")
    tmp_side.write_text(json.dumps(doc, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_side, side)
    return wav


def generate_samples(
    outdir: str | Path,
    ids: Sequence[str] | None = None,
    *,
    rate: int = 8000,
    encoding: str = "ulaw",
    progress: ProgressFn | None = None,
    scenarios_path: str | Path | None = None,
    force: bool = False,
    tuning: Tuning | None = None,
) -> list[Path]:
    """Generate the named scenarios (all when ``ids`` is empty), in the order asked for."""
    pool = load_scenarios(scenarios_path)
    chosen = [_resolve(i, pool) for i in ids] if ids else pool
    tuning = load_tuning() if tuning is None else tuning
    paths: list[Path] = []
    for n, sc in enumerate(chosen, 1):
        paths.append(
            generate_call(sc, outdir, rate=rate, encoding=encoding, force=force, tuning=tuning)
        )
        if progress:
            progress(sc.id, n, len(chosen))
    return paths
