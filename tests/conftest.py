"""The suite refuses to test stale compiled code: after a compiled module is edited, its old extension keeps
running until the package is rebuilt (``agentsim.build``), and every result would be the old code's.
``AGENTSIM_ALLOW_STALE=1`` runs it anyway."""

from __future__ import annotations

import os
import warnings

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest-xdist gives its workers COLUMNS=80, and rich fixes a console's width from COLUMNS when the console
    # is made (at import): the CLI's tables would then ignore the width a test's CliRunner sets, as they do not
    # in one process. Without it, the width is read when printing, as it is for a user.
    os.environ.pop("COLUMNS", None)


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


SLOW_FILES = ("test_readme.py", "test_order.py", "test_calibrate.py", "test_kill.py", "test_plan.py")
"""Files holding the suite's slowest tests (``--durations``: the README's commands ~2 min, the ordered-table
cases ~1.5 min together). pytest-xdist hands whole files (``--dist loadfile``) to the workers in collection
order, so these go first: a long file dealt last would leave one core idle while the other finishes it."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))  # stable: the rest keep their order
