"""The project's errors have one root: ``except QAError`` catches every error the package
raises on purpose (a private control-flow signal, named ``_X``, never leaves its module)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import qa_pipeline
from qa_pipeline.errors import QAError


def _project_exceptions() -> list[type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for mod in pkgutil.walk_packages(qa_pipeline.__path__, "qa_pipeline."):
        try:
            module = importlib.import_module(mod.name)
        except ImportError:  # an optional dependency is not installed
            continue
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("qa_pipeline."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return list(found.values())


def test_every_public_error_derives_from_the_root() -> None:
    errors = _project_exceptions()
    names = {e.__name__ for e in errors}
    # the walk finds them (errors.py alone and the stages' own)
    assert {"ConfigError", "SourceError", "EventDropped", "CompileError", "PatternError"} <= names
    stray = [
        f"{e.__module__}.{e.__qualname__}"
        for e in errors
        if not e.__name__.startswith("_") and not issubclass(e, QAError)
    ]
    assert stray == []


def test_builtin_bases_kept_where_callers_catch_them() -> None:
    from qa_pipeline.rules.lang.linear_regex import PatternError
    from qa_pipeline.rules.ops.compiler import CompileError

    assert issubclass(CompileError, ValueError) and issubclass(PatternError, ValueError)
