"""The compiled runtime: engine, plan, nodes' shared base, text index, timeline, scoring.

These modules are compiled with mypyc when the package is built (``setup.py``). Stale
extensions (a source edited after the build) or ``QA_PIPELINE_PURE_PYTHON=1`` load the
Python sources instead.
"""

import importlib.util
import os
import sys
from pathlib import Path

#: modules compiled with mypyc when the package is built (setup.py), in import order
COMPILED_MODULES = ("textindex", "nodes", "timeline", "scoring", "plan", "engine")


def _compiled_state() -> tuple[bool, str]:
    """(use the compiled modules?, why not)."""
    here = Path(__file__).parent
    built = 0.0
    for name in (*COMPILED_MODULES, "_engine__mypyc"):  # the group library holds the code
        exts = [p for p in here.glob(f"{name}.*") if p.suffix in (".so", ".pyd")]
        if not exts:
            return False, "not compiled"
        built = max(built, *(p.stat().st_mtime for p in exts))
    for name in COMPILED_MODULES:
        if (here / f"{name}.py").stat().st_mtime > built:
            return False, f"{name}.py changed after the build; reinstall to recompile"
    if os.environ.get("QA_PIPELINE_PURE_PYTHON") == "1":
        return False, "QA_PIPELINE_PURE_PYTHON=1"
    return True, ""


def _load_sources() -> None:
    """Import the pure-Python sources of the compiled modules (all of them: compiled and
    interpreted modules of one group cannot be mixed)."""
    here = Path(__file__).parent
    for name in COMPILED_MODULES:
        full = f"{__name__}.{name}"
        spec = importlib.util.spec_from_file_location(full, here / f"{name}.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[full] = mod
        spec.loader.exec_module(mod)
        setattr(sys.modules[__name__], name, mod)


_use_compiled, _why = _compiled_state()
if not _use_compiled:
    _load_sources()
#: how the rule engine runs: ``compiled (mypyc)`` or ``pure Python (<why>)``
ENGINE = "compiled (mypyc)" if _use_compiled else f"pure Python ({_why})"
