"""Pipeline configuration: pydantic models checked before anything starts.

A config file is YAML; every section is optional and falls back to the embedded
defaults (``configs/default.yaml`` documents each key). Unknown keys are rejected and
every problem is reported at once with its file and line.

Secrets from the environment: any string value in a config file may name environment
variables as ``${NAME}`` (``NAME`` = letters, digits, ``_``), e.g.
``password: ${SMTP_PASSWORD}`` or ``url: https://…/send?key=${WECOM_KEY}``; the variable's
value replaces it when the file is loaded. A variable that is not set is a config error
naming the key and the variable. ``$${`` writes a literal ``${``. Values given on the
command line or in code are not expanded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .asr.config import AsrConfig
from .audio import AudioConfig
from .errors import ConfigError, Location
from .privacy.config import PrivacyConfig
from .retention import RetentionConfig
from .rules.config import RulesConfig
from .sinks.config import SinksConfig
from .vad import VadConfig
from .yamlsrc import copy_map, line_of, load_yaml_file, validation_problems


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Each section's model lives with the stage that reads it (the stage imports only its own
# section); this module assembles them into the file's layout and loads it.
class PipelineConfig(_Model):
    audio: AudioConfig = AudioConfig()
    vad: VadConfig = VadConfig()
    asr: AsrConfig = AsrConfig()
    rules: RulesConfig = RulesConfig()
    sinks: SinksConfig = Field(
        default_factory=SinksConfig,
        description="where events go: JSONL files by default, Kafka when configured",
    )
    retention: RetentionConfig = RetentionConfig()
    privacy: PrivacyConfig = Field(
        default_factory=PrivacyConfig,
        description="personal data masked in every transcript before it leaves the process",
    )


ConfigT = TypeVar("ConfigT", bound=PipelineConfig)


def load_yaml(path: Path) -> Any:
    """Load YAML with line numbers and duplicate-key rejection (:mod:`.yamlsrc`); errors
    name the file and line."""
    return load_yaml_file(path)


def load_config(
    path: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> PipelineConfig:
    """Load and validate a config file (None = embedded defaults)."""
    return load_config_as(PipelineConfig, path, overrides)


def load_config_as(
    model: type[ConfigT],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> ConfigT:
    """Load a config file into ``model`` (a ``PipelineConfig`` subclass such as the
    service's ``ServeConfig``); unknown keys rejected, every problem reported with its line."""
    data: dict[str, Any] = {}
    src = "<defaults>"
    if path is not None:
        p = Path(path)
        src = str(p)
        loaded = load_yaml(p)
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError([(Location(src, 1), "top level must be a mapping")])
        data = loaded
        problems = expand_env(data, src)
        if problems:
            raise ConfigError(problems)
    if overrides:
        data = _merge(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(validation_problems(e, data, src)) from None


_ENV_REF = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(data: Any, src: str) -> list[tuple[Location, str]]:
    """Replace ``${NAME}`` in every string of ``data`` (in place, so that line numbers are
    kept) with the environment variable's value; the problems found (unset variables)."""
    problems: list[tuple[Location, str]] = []

    def expand(value: str, loc: tuple[int | str, ...]) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(1):  # $${NAME}: a literal ${NAME}
                return m.group(0)[1:]
            name = m.group(2)
            env = os.environ.get(name)
            if env is None:
                where = ".".join(str(p) for p in loc)
                problems.append(
                    (
                        Location(src, line_of(data, loc)),
                        f"{where}: environment variable {name} is not set",
                    )
                )
                return ""
            return env

        return _ENV_REF.sub(one, value) if "${" in value else value

    def walk(node: Any, loc: tuple[int | str, ...]) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in list(items):
            if isinstance(value, str):
                node[key] = expand(value, (*loc, key))
            elif isinstance(value, (dict, list)):
                walk(value, (*loc, key))

    if isinstance(data, (dict, list)):
        walk(data, ())
    return problems


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy_map(base)  # keeps the lines of what the file said
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
