"""``rules lint``: every problem of a pack, not only its rules' specs (:mod:`.lang.lint`).

Errors (exit 1): load and compile errors (schema, duplicate ids, unknown settings, unknown
or cyclic ``verdicts``), rules without a must-fire or a must-not-fire fixture, fixture
expectations naming unknown rules, and each rule's spec lint. Warnings: unused settings,
and the spec lint's warnings. Above the pack (it compiles it) and the fixtures (it reads
them).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ConfigError, Location
from .fixtures import check_ids, coverage, default_fixtures_dir, load_fixtures
from .lang.lint import Issue, lint_rule
from .lang.schema import Settings
from .pack import analyse_pack

__all__ = ["Issue", "lint_pack"]


def lint_pack(
    path: str | Path | None = None, fixtures_dir: str | Path | None = None
) -> list[Issue]:
    res = analyse_pack(path)
    issues = [Issue("error", loc, "", msg) for loc, msg in res.problems]
    settings = res.pack.settings if res.pack is not None else Settings.model_validate({})
    for spec, loc in res.specs:
        issues.extend(lint_rule(spec, loc, settings))
    # unused settings
    if res.pack is not None:
        defined = {f"thresholds.{k}" for k in settings.thresholds} | {
            f"phrases.{k}" for k in settings.phrases
        }
        for name in sorted(defined - res.used_refs):
            issues.append(
                Issue(
                    "warning", Location(str(res.pack.files[0])), "", f"setting {name} is never used"
                )
            )
    # fixtures
    fx_dir = (
        Path(fixtures_dir)
        if fixtures_dir is not None
        else default_fixtures_dir(Path(path) if path is not None else None)
    )
    try:
        fixtures = load_fixtures(fx_dir) if fx_dir.exists() else []
    except ConfigError as e:
        issues.extend(Issue("error", loc, "", msg) for loc, msg in e.problems)
        fixtures = []
    if res.pack is not None:
        issues.extend(Issue("error", loc, "", msg) for loc, msg in check_ids(res.pack, fixtures))
        cov = coverage(fixtures)
        for spec, loc in res.specs:
            if not spec.enabled:
                continue
            got = cov.get(spec.id, set())
            if "fire" not in got:
                issues.append(Issue("error", loc, spec.id, "no fixture where it must fire"))
            if "ok" not in got:
                issues.append(
                    Issue("error", loc, spec.id, "no fixture where it must not fire (ok)")
                )
    return issues
