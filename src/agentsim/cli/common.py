"""What the command modules share: loading a scenario with ``--set`` overrides, number formatting, the run
summary table, comma-separated option lists and writing a run's report.

Every helper that meets bad input exits through :func:`agentsim.cli.console.fail` (``error: ...`` on stderr,
exit code 2, no traceback). The report package (matplotlib) is imported inside :func:`_report_or_fail`, so
importing the command line never loads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from agentsim import api, spec
from agentsim.cli.console import fail as _fail
from agentsim.cli.console import out_console
from agentsim.errors import ScenarioError
from agentsim.files import OutputExistsError, OutputPathError, check_output
from agentsim.spec.load import with_file_lines
from agentsim.yamlio import loads


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


def summary_table(summary: dict[str, Any], title: str) -> Table:
    """A readable table of a run's summary."""
    t = Table(title=title, show_header=True, header_style="bold")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_column("p50", justify="right")
    t.add_column("p90", justify="right")
    t.add_column("p99", justify="right")
    for key in ("ttft_s", "tpot_s", "call_e2e_s", "task_s", "calls_per_task", "task_usd"):
        d = summary.get(key) or {}
        t.add_row(f"{key} (mean)", _fmt(d.get("mean")), _fmt(d.get("p50")), _fmt(d.get("p90")), _fmt(d.get("p99")))
    slo = summary.get("slo_attainment") or {}
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
        ("GPU-hours", _fmt(summary["gpu_hours"])),
        ("$ total (window)", _fmt(summary["usd_total"])),
        ("$ / Mtok output", _fmt(summary["usd_per_mtok_output"])),
        ("$ / Mtok processed", _fmt(summary["usd_per_mtok_processed"])),
        ("$ / task", _fmt(summary["usd_per_task"])),
        ("energy kWh", _fmt(summary["energy_kwh"])),
        ("output tokens / MWh", _fmt(summary["tokens_per_mwh"])),
    ]
    for name, value in rows:
        t.add_row(name, value, "", "", "")
    return t


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
