"""The one error users see for a scenario that cannot run: every bad field with its path and the reason."""

from __future__ import annotations


class ScenarioError(ValueError):
    """A scenario that cannot run. ``errors`` lists ``(path, reason)`` pairs; ``str()`` shows one per line."""

    def __init__(self, errors: list[tuple[str, str]], source: str = "scenario") -> None:
        self.errors = errors
        self.source = source
        lines = "\n".join(f"  {p or '<root>'}: {m}" for p, m in errors)
        super().__init__(f"{source} is not valid:\n{lines}")
