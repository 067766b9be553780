"""Pages: Jinja2 templates rendered into one self-contained HTML file, written next to its PNGs.

Every page extends ``templates/base.html.j2``: CSS inline, no script, no link, no network access, so the file can
be mailed or archived on its own. Each figure is embedded as a base64 ``data:`` URI (the ``b64`` filter) and also
written as ``<name>.png`` beside the page. Templates autoescape: the Python side hands them plain strings (run
labels, paths, captions, cells already formatted by :func:`fmt`) and never markup. Jinja2 is imported when a page
is rendered, not with the package, and its absence is a :class:`~agentsim.report.errors.MissingDependencyError`
naming the extra to install. Files are written atomically (:func:`agentsim.files.write_bytes`), replacing the
report of an earlier call.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentsim import files
from agentsim.report import plots
from agentsim.report.errors import missing
from agentsim.report.figures import Figure
from agentsim.report.plots import si

REPORT_FILE = "report.html"  # a run's or a sweep's page


def fmt(x: Any, digits: int = 4) -> str:
    """A table cell: ``–`` for none, ``yes``/``no``, ``7,273``, ``0.02873``, ``502.8M``."""
    if x is None:
        return "–"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if isinstance(x, float):
        return f"{x:.{digits}g}" if abs(x) < 1e4 else si(x, digits=digits)
    return str(x)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with ``context`` (autoescaped)."""
    try:
        import jinja2
    except ImportError as e:
        raise missing("jinja2") from e
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("agentsim.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,  # a misspelt name is an error, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["b64"] = _b64
    env.globals["png_width"], env.globals["png_height"] = plots.PNG_SIZE_PX
    return env.get_template(template).render(**context)


def write_page(out: Path, name: str, page: str, figs: Sequence[Figure]) -> Path:
    """Write ``out/<name>`` and one ``out/<figure>.png`` per figure, replacing earlier ones; return the page path."""
    for f in figs:
        files.write_bytes(out / f"{f.name}.png", f.png, overwrite=True)
    return files.write_bytes(out / name, page.encode("utf-8"), overwrite=True)
