"""Helpers for the privacy tests: the numbers a customer says, and where to look for them."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np

MOBILE = "13912345678"
ID_NUMBER = "11010519491231002X"
BANK_CARD = "6222020200112233445"
#: what the customer says, by kind, as digits
SAID = {"mobile": MOBILE, "id_number": ID_NUMBER, "bank_card": BANK_CARD}
SENTENCE = {
    "mobile": f"我的手机号是{MOBILE}",
    "id_number": f"身份证号是{ID_NUMBER}",
    "bank_card": f"银行卡号{BANK_CARD}",
}


def runs_of(number: str, n: int = 5) -> set[str]:
    """Every run of ``n`` consecutive digits of ``number``."""
    digits = "".join(c for c in number if c.isdigit())
    return {digits[i : i + n] for i in range(len(digits) - n + 1)}


# random ids and hashes (event and session ids, SHA-256 keys): hex with letters in it,
# whose digits can spell any five by chance (a number said is never written so)
_HEX_ID = re.compile(r"[0-9a-f]{16,}")


def _without_ids(text: str) -> str:
    return _HEX_ID.sub(lambda m: " " if not m.group().isdigit() else m.group(), text)


def leaks(texts: Iterable[tuple[str, str]], numbers: Iterable[str]) -> list[str]:
    """``where: run`` for every run of five digits of ``numbers`` found in ``texts``
    (``(where, text)`` pairs), random hex ids aside."""
    runs = set().union(*(runs_of(n) for n in numbers))
    return [
        f"{where}: {r}"
        for where, text in texts
        for r in sorted(runs)
        if r in text and r in _without_ids(text)
    ]


def metric_labels(exposition: str) -> str:
    """Metric names and label values of a Prometheus exposition, without the samples'
    values (timestamps and sums, whose digits can spell anything)."""
    return "\n".join(
        ln.rsplit(" ", 1)[0] for ln in exposition.splitlines() if ln and not ln.startswith("#")
    )


def files_under(root: Path) -> list[tuple[str, str]]:
    """Every file's bytes as text, databases and their journals too (a deleted row's text
    may linger in a free page: the raw bytes must be clean, not only the rows)."""
    return [
        (str(p), p.read_bytes().decode("utf-8", "replace"))
        for p in sorted(root.rglob("*"))
        if p.is_file()
    ]


def sqlite_rows(path: Path) -> list[tuple[str, str]]:
    """Every row of every table of a SQLite file, as text."""
    db = sqlite3.connect(str(path))
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = []
        for t in tables:
            for row in db.execute(f"SELECT * FROM {t}"):  # noqa: S608 - names from the file
                out.append(
                    (
                        f"{path.name}:{t}",
                        " ".join(
                            v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)
                            for v in row
                        ),
                    )
                )
        return out
    finally:
        db.close()


def clip8k(speech_dir: Path, name: str) -> np.ndarray:
    """A real clip at 8 kHz (a telephone line's rate)."""
    import soxr

    from qa_pipeline.audio import load_call

    a = load_call(speech_dir / name).channels[0]
    return soxr.resample(a, 16000, 8000).astype(np.float32)


def two_channel(placements: list[tuple[int, float, np.ndarray]], seconds: float) -> np.ndarray:
    """Agent (0) and customer (1) channels at 8 kHz with the clips placed, over line noise."""
    rng = np.random.default_rng(3)
    out = (rng.standard_normal((2, int(seconds * 8000))) * 1e-3).astype(np.float32)
    for ch, t, a in placements:
        i = int(t * 8000)
        out[ch, i : i + len(a)] += a[: out.shape[1] - i]
    return np.clip(out, -1, 1)
