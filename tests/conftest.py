"""The suite refuses to test stale compiled code: after a compiled module is edited, its old extension keeps
running until the package is rebuilt (``agentsim.build``), and every result would be the old code's.
``AGENTSIM_ALLOW_STALE=1`` runs it anyway."""

from __future__ import annotations

import os
import warnings

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the import's own warning: said below, as an error
        from agentsim import build
    stale = build.stale_modules()
    if stale and os.environ.get("AGENTSIM_ALLOW_STALE", "") in ("", "0"):
        pytest.exit(
            f"{build.stale_message(stale)}\nNot running the tests on stale compiled code "
            "(AGENTSIM_ALLOW_STALE=1 runs them anyway).",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
