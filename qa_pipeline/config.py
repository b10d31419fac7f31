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

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .asr.config import AsrConfig
from .audio import AudioConfig
from .errors import ConfigError, Location
from .rules.config import RulesConfig
from .sinks.config import SinksConfig
from .vad import VadConfig
from .yamlguard import BoundedComposer


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


ConfigT = TypeVar("ConfigT", bound=PipelineConfig)


class _LineLoader(BoundedComposer, yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and remembers each key's line; bounded depth
    and alias expansion (:mod:`.yamlguard`)."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    mapping: dict[Any, Any] = {}
    lines: dict[Any, int] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        mapping[key] = loader.construct_object(value_node, deep=True)
        lines[key] = key_node.start_mark.line + 1
    if mapping:
        _LINES[id(mapping)] = lines
    return mapping


_LINES: dict[int, dict[Any, int]] = {}
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _line_of(data: Any, loc: tuple[int | str, ...]) -> int:
    line = 0
    node = data
    for part in loc:
        if isinstance(node, dict):
            line = _LINES.get(id(node), {}).get(part, line)
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            break
    return line


def load_yaml(path: Path) -> Any:
    """Load YAML with duplicate-key rejection; errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([(Location(str(path)), f"cannot read: {e.strerror or e}")]) from e
    except UnicodeDecodeError as e:
        raise ConfigError(
            [(Location(str(path)), f"not UTF-8 text (byte {e.start}): is this a YAML file?")]
        ) from e
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else 0
        raise ConfigError([(Location(str(path), line), str(e.problem or e))]) from e
    except yaml.YAMLError as e:
        raise ConfigError([(Location(str(path)), str(e))]) from e


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
        problems = [
            (
                Location(src, _line_of(data, tuple(err["loc"]))),
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}",
            )
            for err in e.errors()
        ]
        raise ConfigError(problems) from None


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
                        Location(src, _line_of(data, loc)),
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
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out
