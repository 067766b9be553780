"""Where the workplace's public data lives: ``../shared/data`` beside the repository (CI puts it there too).

Tests that need it skip when it is absent (a fresh clone elsewhere); in CI it is always present."""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TRACES = SHARED_DATA / "traces"
