"""One root for the project's errors, each naming the input it is about."""

from __future__ import annotations

from dataclasses import dataclass


class QAError(Exception):
    """Base class: an error a user can act on (bad input, bad config, missing model)."""


class AudioError(QAError):
    """An audio input cannot be used. The message names the file and the problem."""

    def __init__(self, source: str, problem: str) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem}")


class ModelError(QAError):
    """The Whisper model is missing or corrupt; the message says how to fix it."""


@dataclass(frozen=True, slots=True)
class Location:
    """Where in a file an error is (1-based line; 0 when unknown)."""

    path: str
    line: int = 0

    def __str__(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path


class ConfigError(QAError):
    """A config or rule file is invalid. Carries every problem found, not just the first."""

    def __init__(self, problems: list[tuple[Location, str]]) -> None:
        self.problems = problems
        lines = [f"{loc}: {msg}" for loc, msg in problems]
        super().__init__("invalid configuration:\n  " + "\n  ".join(lines))
