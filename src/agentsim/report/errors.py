"""Why a report cannot be made: the input is not a run or sweep directory, or an optional dependency is missing.

Figures need matplotlib and pages need Jinja2, both from the extra ``agentsim[report]``. Neither is imported by
``import agentsim``: each is imported where it is used, and :func:`require_report_deps` checks both up front, so a
command fails with the name of the extra to install before doing any work.
"""

from __future__ import annotations

import importlib

INSTALL_HINT = "pip install 'agentsim[report]'"

# The modules the report extra brings, in the order they are checked.
_REPORT_DEPS = ("matplotlib", "jinja2")


class ReportError(Exception):
    """A report cannot be made: not a run directory, or a missing dependency."""


class MissingDependencyError(ReportError):
    """An optional dependency of reports (matplotlib or Jinja2) is not installed."""


def missing(module: str) -> MissingDependencyError:
    """The error for a report dependency that did not import, naming the extra to install."""
    return MissingDependencyError(f"reports need {module}, which is not installed: {INSTALL_HINT}")


def require_report_deps() -> None:
    """Raise :class:`MissingDependencyError`, naming the extra to install, unless matplotlib and Jinja2 import."""
    for module in _REPORT_DEPS:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise missing(module) from e
