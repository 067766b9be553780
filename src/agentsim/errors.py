"""The one error users see for a scenario that cannot run: every bad field with its path and the reason; and
the did-you-mean hint for a name that is not known."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ScenarioError(ValueError):
    """A scenario that cannot run. ``errors`` lists ``(path, reason)`` pairs; ``str()`` shows one per line,
    with the line of the scenario file that set the path when ``lines`` knows it."""

    def __init__(
        self, errors: list[tuple[str, str]], source: str = "scenario", lines: dict[str, int] | None = None
    ) -> None:
        self.errors = errors
        self.source = source
        self.lines = dict(lines or {})
        text = "\n".join(
            f"  {p or '<root>'}{f' (line {self.lines[p]})' if p in self.lines else ''}: {m}" for p, m in errors
        )
        super().__init__(f"{source} is not valid:\n{text}")

    def __reduce__(self) -> tuple[type[ScenarioError], tuple[list[tuple[str, str]], str, dict[str, int]]]:
        return ScenarioError, (self.errors, self.source, self.lines)  # survives a process pool

    def with_lines(self, lines: dict[str, int]) -> ScenarioError:
        """The same error with the line of the file that set each path (``lines``: path -> line)."""
        return ScenarioError(self.errors, self.source, {**self.lines, **lines})


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """``" (did you mean 'model'?)"`` when a name in ``known`` is close to ``word`` (difflib), else ``""``."""
    close = difflib.get_close_matches(str(word), [str(k) for k in known], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
