"""The report of a capacity plan (``agentsim plan ... --out plan.json``): the answer, every candidate with its
SLO intervals, and two Pareto frontiers over every replica count the search simulated at full length that
met the SLOs: $/Mtok against the speed a user sees (output tokens/s per user, 1 / mean TPOT), and $/task
against the task duration p95. Only the frontier's points are labelled, so labels do not pile up.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from agentsim.analysis.accuracy import mape_text
from agentsim.planning.plan.result import PlanResult
from agentsim.report import plots
from agentsim.report.errors import ReportError, require_report_deps
from agentsim.report.figures import Figure
from agentsim.report.html import fmt, render, write_page
from agentsim.report.plots import color


def load_plan(path: str | Path) -> PlanResult:
    """A plan saved as JSON; :class:`ReportError` when the file is not one."""
    try:
        return PlanResult.load(path)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:  # AttributeError: JSON not an object
        raise ReportError(f"{path}: not a saved plan ({e})") from None


def _points(result: PlanResult) -> list[tuple[str, float, float, float, float]]:
    """(label, tokens/s per user, $/Mtok, task p95, $/task) of every full-length count that met the SLOs."""
    out = []
    for row in result.rows:
        for ev in row.evaluations:
            if ev.decision == "meets" and not ev.screening:
                out.append((f"{row.label} x{ev.replicas}",
                            np.nan if ev.tokens_per_s_per_user is None else ev.tokens_per_s_per_user,
                            np.nan if ev.usd_per_mtok_output is None else ev.usd_per_mtok_output,
                            np.nan if ev.task_p95_s is None else ev.task_p95_s,
                            np.nan if ev.usd_per_task is None else ev.usd_per_task))  # fmt: skip
    return out


def plan_figures(result: PlanResult, title: str) -> list[Figure]:
    pts = _points(result)
    figs = []
    for name, caption, xs, ys, xlabel, ylabel, max_x in (
        ("plan_cost_speed", "$/Mtok against the speed a user sees", 1, 2, "output tokens/s per user (1 / mean TPOT)",
         "$ / Mtok output", True),
        ("plan_task", "$/task against task duration p95", 3, 4, "task duration p95 (s)", "$ / task", False),
    ):  # fmt: skip
        x = np.array([p[xs] for p in pts], dtype=float)
        y = np.array([p[ys] for p in pts], dtype=float)
        front = plots.pareto_mask(x, y, max_x=max_x, max_y=False) if pts else np.zeros(0, dtype=bool)
        points = [plots.Point(p[0] if f else "", float(a), float(b), color(0 if f else 7))
                  for p, a, b, f in zip(pts, x, y, front, strict=True)]  # fmt: skip
        png = plots.scatter_png(f"{caption}: {title}", xlabel, ylabel, points, frontier=front)
        figs.append(Figure(name, caption[0].upper() + caption[1:],
                           "Every replica count simulated at full length that met the SLOs; the dashed line joins "
                           "the Pareto frontier (no other point is cheaper and better), and only its points are "
                           "labelled.", png))  # fmt: skip
    return figs


def write_plan_report(path: str | Path, out: str | Path | None = None) -> Path:
    """Write ``<plan stem>.html`` and the PNGs of the plan saved at ``path`` into ``out`` (default: beside it)."""
    require_report_deps()
    result = load_plan(path)
    title = f"{result.scenario.get('name', 'plan')}, {result.model}"
    figs = plan_figures(result, title)
    header = ["#", "deployment", "replicas", "GPUs", "$/hour", "$/Mtok", *result.slos, "model error", "status"]
    rows = []
    for rank, row in zip(result.ranks(), result.rows, strict=True):
        cells = ["–" if rank is None else str(rank), row.label, fmt(row.replicas), fmt(row.gpus),
                 fmt(row.usd_per_hour), fmt(row.usd_per_mtok_output)]  # fmt: skip
        for k in result.slos:
            e = row.slos.get(k)
            cells.append("–" if e is None else f"{fmt(e.value)} [{fmt(e.lo)}, {fmt(e.hi)}]")
        err = row.model_error_pct  # public-data MAPE of its step-time model (analysis/accuracy.py)
        cells.append("–" if err is None else f"{mape_text(err)} ({row.model_class})")
        cells.append(row.status if row.reason is None else f"{row.status}: {row.reason}")
        rows.append(cells)
    best = result.answer
    answer = ("nothing meets the SLOs among these candidates" if best is None else
              f"{best.label}: {best.replicas} replicas ({best.gpus} GPUs), ${fmt(best.usd_per_hour)}/hour, "
              f"${fmt(best.usd_per_mtok_output)}/Mtok output")  # fmt: skip
    meta = (f"SLOs: {', '.join(f'{k} <= {v:g}' for k, v in result.slos.items())}; {result.simulations} "
            f"simulations; seeds {result.seeds[: result.replications]}...; agentsim {result.agentsim_version}")
    page = render("plan.html.j2", title=title, meta=meta, path=str(path), answer=answer, header=header, rows=rows,
                  warnings=result.warnings, figures=figs)  # fmt: skip
    target = Path(out) if out is not None else Path(path).parent
    return write_page(target, f"{Path(path).stem}.html", page, figs)
