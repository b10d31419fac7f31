"""YAML loading that remembers where every value came from and rejects duplicate keys.

Mappings load as :class:`YMap` (a ``dict`` with ``line`` and ``key_lines``), sequences as
:class:`YSeq` (a ``list`` with ``line`` and ``item_lines``), so a validation error at a
path like ``rules.3.require.keyword`` can be reported as ``file:line``. :func:`validation_problems` turns
a pydantic ``ValidationError`` on loaded data into ``(file:line, message)`` problems. Config
files, rule packs, fixtures and the notify config all load through here. Two YAML 1.1
surprises are switched off: ``07:30`` stays a string (not the base-60 integer 450) and
duplicate keys are an error instead of "last one wins".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import ConfigError, Location
from .yamlguard import BoundedComposer

if TYPE_CHECKING:
    from pydantic import ValidationError


class YMap(dict[Any, Any]):
    """A mapping loaded from YAML, with the line of the mapping and of each key."""

    line: int = 0
    key_lines: dict[Any, int]

    def __init__(self) -> None:
        super().__init__()
        self.key_lines = {}


class YSeq(list[Any]):
    """A sequence loaded from YAML, with the line of the sequence and of each item."""

    line: int = 0
    item_lines: list[int]

    def __init__(self) -> None:
        super().__init__()
        self.item_lines = []


def copy_map(m: dict[Any, Any]) -> dict[Any, Any]:
    """A shallow copy that keeps a :class:`YMap`'s lines (``dict(m)`` drops them)."""
    if not isinstance(m, YMap):
        return dict(m)
    out = YMap()
    out.update(m)
    out.line = m.line
    out.key_lines = dict(m.key_lines)
    return out


_INT_NO_SEXAGESIMAL = re.compile(
    r"""^(?:[-+]?0b[0-1_]+
    |[-+]?0[0-7_]+
    |[-+]?(?:0|[1-9][0-9_]*)
    |[-+]?0x[0-9a-fA-F_]+)$""",
    re.X,
)
_FLOAT_NO_SEXAGESIMAL = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?
    |\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)


class _LineLoader(BoundedComposer, yaml.SafeLoader):
    """SafeLoader that records lines, collects duplicate keys and has no base-60 numbers;
    bounded depth and alias expansion (:mod:`qa_pipeline.yamlguard`)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.problems: list[tuple[int, str]] = []


# Copy the resolver table so the change stays local to this loader.
_LineLoader.yaml_implicit_resolvers = {
    k: [
        (tag, rx)
        for tag, rx in v
        if tag not in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
    ]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", _INT_NO_SEXAGESIMAL, list("-+0123456789")
)
_LineLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", _FLOAT_NO_SEXAGESIMAL, list("-+0123456789.")
)


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> Iterator[YMap]:
    m = YMap()
    m.line = node.start_mark.line + 1
    yield m
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            loader.problems.append((line, "a mapping key must be a plain value"))
            continue
        if key in m:
            loader.problems.append(
                (line, f"duplicate key {key!r} (first at line {m.key_lines[key]})")
            )
            continue
        m[key] = loader.construct_object(value_node, deep=True)
        m.key_lines[key] = line


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> Iterator[YSeq]:
    s = YSeq()
    s.line = node.start_mark.line + 1
    yield s
    for child in node.value:
        s.append(loader.construct_object(child, deep=True))
        s.item_lines.append(child.start_mark.line + 1)


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def load_yaml_text(text: str, path: str) -> Any:
    """Parse YAML text; raise :class:`ConfigError` for syntax errors or duplicate keys."""
    loader = _LineLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 0
        raise ConfigError([(Location(path, line), f"YAML syntax: {e.problem or e}")]) from e
    except yaml.YAMLError as e:
        raise ConfigError([(Location(path, 0), f"YAML: {e}")]) from e
    finally:
        loader.dispose()
    if loader.problems:
        raise ConfigError([(Location(path, line), msg) for line, msg in loader.problems])
    return data


def load_yaml_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([(Location(str(path), 0), f"cannot read: {e.strerror}")]) from e
    except UnicodeDecodeError as e:
        raise ConfigError([(Location(str(path), 0), f"not UTF-8 text (byte {e.start})")]) from e
    return load_yaml_text(text, str(path))


def line_of(data: Any, loc: Sequence[int | str]) -> int:
    """The line of the deepest node on ``loc`` (a pydantic error location) that has one."""
    best = getattr(data, "line", 0)
    node = data
    for part in loc:
        if isinstance(node, YMap) and part in node:
            best = node.key_lines.get(part, best)
            node = node[part]
        elif isinstance(node, YSeq) and isinstance(part, int) and 0 <= part < len(node):
            best = node.item_lines[part]
            node = node[part]
        else:
            break
    return best


def format_loc(loc: Iterable[int | str]) -> str:
    """A pydantic error location as a path: ``rules[3].require.keyword``."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def validation_problems(
    e: ValidationError,
    data: Any,
    path: str,
    prefix: tuple[int | str, ...] = (),
    label: Callable[[Any, tuple[int | str, ...]], str] | None = None,
) -> list[tuple[Location, str]]:
    """Each error of ``e`` (raised validating ``data``, loaded from ``path``; ``data`` sits
    at ``prefix`` in the file) as ``(file:line, "path: message")``: an unknown key says so,
    pydantic's ``Value error,`` is dropped, ``label(data, loc)`` (e.g. the rule's id) goes
    before the path."""
    out = []
    for err in e.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        line = line_of(data, loc)
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        tag = label(data, loc) if label is not None else ""
        out.append((Location(path, line), f"{tag}{format_loc(prefix + loc)}: {msg}"))
    return out
