"""What an operator module imports to declare and register its operator: the registry
itself lives with the language (:mod:`qa_pipeline.rules.lang.registry`), since the schema's
condition model is derived from it; the operator modules fill in its compile steps."""

from ..lang.registry import (
    REGISTRY,
    CPath,
    Example,
    Issue,
    Level,
    LintCtx,
    Operator,
    Trigger,
    of_level,
    on_change,
    readme_table,
    register,
    registered,
    trigger_of,
    trigger_text,
    unregister,
    with_readme_table,
)

__all__ = [
    "REGISTRY",
    "CPath",
    "Example",
    "Issue",
    "Level",
    "LintCtx",
    "Operator",
    "Trigger",
    "of_level",
    "on_change",
    "readme_table",
    "register",
    "registered",
    "trigger_of",
    "trigger_text",
    "unregister",
    "with_readme_table",
]
