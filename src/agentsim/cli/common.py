"""What the command modules share: loading a scenario with ``--set`` overrides, number formatting, the run
summary table, comma-separated option lists and writing a run's report.

Every helper that meets bad input exits through :func:`agentsim.cli.console.fail` (``error: ...`` on stderr,
exit code 2, no traceback). The report package (matplotlib) is imported inside :func:`_report_or_fail`, so
importing the command line never loads it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console, Group
from rich.table import Table

from agentsim import api, spec
from agentsim.analysis.accuracy import accuracy_cell
from agentsim.analysis.metrics import optional_rows
from agentsim.cli.console import fail as _fail
from agentsim.cli.console import out_console
from agentsim.errors import ScenarioError
from agentsim.files import OutputExistsError, OutputPathError, check_output
from agentsim.spec.load import with_file_lines
from agentsim.yamlio import loads


def _max_memory(value: float | None) -> float | None:
    if value is not None and math.isnan(value):
        _fail("--max-memory must be a number of MB (0: no limit), got nan")
    return value


MAX_MEMORY = typer.Option(
    "--max-memory",
    min=0,
    callback=_max_memory,
    metavar="MB",
    help="refuse to start when the run's memory is estimated above this (default: half the machine's; 0: no limit)",
)
"""``--max-memory`` of run, sweep and plan: the limit of :mod:`agentsim.preflight`'s check."""


def _load(scenario: Path | None, overrides: list[str] | None, seed: int | None) -> spec.Scenario:
    """The scenario (a file, a built-in example by name, or the default) with ``--set`` overrides and ``--seed``;
    exit 2 naming the field if it is not valid."""
    try:
        if scenario and not scenario.exists() and str(scenario) in api.example_names():
            # A built-in example by name: `agentsim run hybrid`.
            data = loads(api.example_text(str(scenario)))
            s = api.load_scenario(data, overrides or [], name=f"built-in example {scenario}")
        elif scenario:
            s = api.load_scenario(scenario, overrides or [])
        else:
            s = api.default_scenario()
            if overrides:
                s = api.load_scenario(s.model_dump(mode="json"), overrides, name="built-in default scenario")
    except ScenarioError as e:
        _fail(str(e))
    if seed is not None:
        try:
            s = api.load_scenario(s, [f"seed={seed}"])
        except ScenarioError as e:
            _fail(str(e))
    return s


def _fmt(x: Any, digits: int = 4) -> str:
    """A value for a table cell: floats to ``digits`` significant digits, ``-`` for unset."""
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


def summary_table(summary: dict[str, Any], title: str) -> Group:
    """A readable summary: the latency and cost distributions (with ``n`` and the items still unfinished;
    ``>=`` marks a lower bound), then the scalar figures. Two narrow tables, so that 80 columns cut nothing."""
    dists = Table(title=title, show_header=True, header_style="bold")
    dists.add_column("distribution", no_wrap=True)
    for c in ("mean", "p50", "p90", "p99", "n", "unfin."):
        dists.add_column(c, justify="right", no_wrap=True)
    for key in ("ttft_s", "tpot_s", "call_e2e_s", "task_s", "calls_per_task", "task_usd"):
        d = summary.get(key) or {}
        low = set(d.get("lower_bounds") or ())

        def cell(stat: str, d: dict[str, Any] = d, low: set[str] = low) -> str:
            return (">=" if stat in low else "") + _fmt(d.get(stat))  # a lower bound, not an estimate

        censored = d.get("censored")
        dists.add_row(key, cell("mean"), cell("p50"), cell("p90"), cell("p99"), f"{d.get('n', 0)}",
                      "" if censored is None else f"{censored}")  # fmt: skip
    slo = summary.get("slo_attainment") or {}
    room = summary.get("headroom") or {}
    rows = [
        ("calls completed / unfinished", f"{summary['calls_completed']} / {summary['calls_unfinished']}"),
        ("tasks completed / unfinished", f"{summary['tasks_completed']} / {summary['tasks_unfinished']}"),
        (
            "calls rejected / tasks failed",  # past the model's context window
            f"{summary.get('calls_rejected', 0)} / {summary.get('tasks_failed', 0)}",
        ),
        ("calls compacted", f"{summary.get('calls_compacted', 0)}"),
        (
            "prompt tokens (cached)",
            f"{summary['prompt_tokens']:,} ({_fmt(summary['cache_hit_rate'], 3)} hit)",
        ),
        ("output tokens", f"{summary['output_tokens']:,}"),
        ("output tokens/s", _fmt(summary["output_tokens_per_s"])),
        ("SLO attainment calls / tasks", f"{_fmt(slo.get('calls'), 3)} / {_fmt(slo.get('tasks'), 3)}"),
        ("busy fraction", _fmt(summary["busy_fraction"], 3)),
        ("batching load (headroom)", _fmt(room.get("batching_load"), 3)),
        ("KV active / cached", f"{_fmt(room.get('kv_active_fraction'), 3)} / "
                               f"{_fmt(room.get('kv_cached_fraction'), 3)}"),
        ("GPU-hours", _fmt(summary["gpu_hours"])),
        ("$ total (window)", _fmt(summary["usd_total"])),
        ("$ / Mtok output", _fmt(summary["usd_per_mtok_output"])),
        ("$ / Mtok processed", _fmt(summary["usd_per_mtok_processed"])),
        ("$ / task", f"{_fmt(summary['usd_per_task'])} ({summary.get('tasks_finished_in_window', 0)} tasks)"),
        ("energy kWh", _fmt(summary["energy_kwh"])),
        ("output tokens / MWh", _fmt(summary["tokens_per_mwh"])),
    ]
    rows += optional_rows(summary, _fmt)
    for pool, entry in (summary.get("accuracy") or {}).items():
        # the default roofline's MAPE on public rows of this pool's class (* carried over to this deployment)
        rows.append((f"model MAPE tok/s / TPOT, {pool}", accuracy_cell(entry)))
    figures = Table(show_header=True, header_style="bold")
    figures.add_column("figure", no_wrap=True)
    figures.add_column("value", justify="right", no_wrap=True)
    for name, value in rows:
        figures.add_row(name, value)
    return Group(dists, figures)


def print_warnings(summary: dict[str, Any], console: Console) -> None:
    """The run's warnings (``summary["warnings"]``), one line each."""
    for w in summary.get("warnings") or []:
        console.print(f"[yellow]warning[/] ({w['code']}): {w['message']}", highlight=False, soft_wrap=True)


def _csv_list(text: str | None, what: str, cast: Any = str) -> list[Any]:
    """``a,b,c`` -> its items, each through ``cast``; exit 2 naming the option ``what`` if one cannot be read."""
    if not text:
        return []
    try:
        return [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        _fail(f"{what}: cannot read {text!r}")


def _report_or_fail(run_dir: Path, out: Path | None = None, console: Console | None = None) -> Path:
    """Write ``report.html`` (and PNGs) for ``run_dir``; exit 2 with the reason if that is not possible."""
    from agentsim import report as rep

    try:
        page = rep.write_report(run_dir, out)
    except rep.ReportError as e:
        _fail(str(e))
    (console or out_console).print(f"report: {page}", highlight=False, soft_wrap=True)
    return page


def _check_out(path: Path | None, *, overwrite: bool, directory: bool = False) -> None:
    """Exit 2 now, before computing, when the output ``path`` exists (without ``--overwrite``) or cannot be
    written there (:func:`agentsim.files.check_output`)."""
    if path is None:
        return
    try:
        check_output(path, overwrite=overwrite, directory=directory)
    except (OutputExistsError, OutputPathError) as e:
        _fail(str(e))


def _fail_scenario(e: ScenarioError, scenario: Path | None, overrides: list[str] | None) -> NoReturn:
    """Exit 2 with ``e``, each bad field with the line of the scenario file that set it (when it is a file)."""
    if scenario is not None and scenario.is_file():
        e = with_file_lines(e, scenario, overrides or [])
    _fail(str(e))
