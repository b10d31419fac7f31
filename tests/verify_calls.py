"""The farewell call both verification tests score (tests/test_verify.py on the recorded
path, tests/live/test_verify_live.py on a live call): a pack whose only required rule is the
closing farewell (and a forbidden phrase that is never said), and the agent's one turn
spoken by espeak-ng at 8 kHz, which Whisper base mishears without the verification's
hints."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from qa_pipeline.rules import RulePack, load_pack

TOOLS_MISSING = [t for t in ("espeak-ng", "sox") if shutil.which(t) is None]

CLOSING_PACK = """\
name: verify-test
version: "0.1"
settings:
  company_name: 华夏
  uncertain_confidence: 0
  phrases:
    farewell: [感谢您的来电, 谢谢您的来电, 感谢来电, 再见, 祝您生活愉快, 祝您愉快, 欢迎再次来电, 请走好]
"""

CLOSING_RULES = """\
rules:
  - id: CLOSE-THANKS
    description: 结束语：感谢来电并道别
    severity: major
    weight: 4
    scope: {role: agent, last_turns: 3}
    require:
      fuzzy: "${phrases.farewell}"
  - id: BAN-POLICY
    description: 禁语
    severity: major
    weight: 4
    scope: {role: agent}
    forbid:
      fuzzy: [这是公司规定]
"""


def closing_pack(folder: Path) -> RulePack:
    """The pack (CLOSE-THANKS required, BAN-POLICY forbidden) written to ``folder``, loaded."""
    (folder / "pack.yaml").write_text(CLOSING_PACK, encoding="utf-8")
    (folder / "rules.yaml").write_text(CLOSING_RULES, encoding="utf-8")
    return load_pack(folder)


def agent_says(text: str, variant: str, rate: int = 8000) -> np.ndarray:
    """``text`` spoken by espeak-ng voice ``variant`` (speed 165, pitch 40) at ``rate``,
    float32."""
    from qa_pipeline.samples.generate import Voice, render_speech

    audio = render_speech(text, Voice(variant=variant, speed=165, pitch=40), rate=rate)
    return np.asarray(audio, dtype=np.float32)
