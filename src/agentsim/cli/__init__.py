"""The ``agentsim`` command line: a thin shell over :mod:`agentsim.api`.

Exit codes: 0 success; 2 bad input (the scenario, an override, an existing output directory), with the field
path and the reason on stderr and no traceback; 1 a run that failed for another reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from agentsim import api, spec, store
from agentsim.cli.console import err_console, out_console
from agentsim.cli.console import fail as _fail
from agentsim.errors import ScenarioError

app = typer.Typer(
    name="agentsim",
    help="Simulate agentic LLM workloads on modeled serving clusters: latency, tokens, $ per token and per task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)



def _load(scenario: Path | None, overrides: list[str] | None, seed: int | None) -> spec.Scenario:
    try:
        if scenario and not scenario.exists() and str(scenario) in api.example_names():
            # A built-in example by name: `agentsim run hybrid`.
            data = yaml.safe_load(api.example_text(str(scenario)))
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


@app.command()
def run(
    scenario: Annotated[Path | None, typer.Argument(help="scenario YAML; omit for the built-in default")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory (default: a new runs/...)")] = None,
    seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: path.to[0].field=value")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out directory")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar, no table")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    report_: Annotated[bool, typer.Option("--report", callback=_report_deps, help="also write report.html")] = False,
) -> None:
    """Simulate a scenario and write calls/tasks/replicas Parquet tables, summary.json and manifest.json."""
    s = _load(scenario, set_, seed)
    target = out if out is not None else store.new_run_dir(Path("runs"), s.name)
    if target.exists() and not overwrite:
        _fail(f"{target} already exists; choose another --out or pass --overwrite")
    show = not quiet and not as_json and sys.stderr.isatty()
    try:
        if show:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            with Progress(
                TextColumn("simulating"),
                BarColumn(),
                TextColumn("{task.completed:.0f}/{task.total:.0f} s sim"),
                TimeElapsedColumn(),
                console=err_console,
                transient=True,
            ) as bar:
                job = bar.add_task("sim", total=s.horizon_s)
                result = api.simulate(s, progress=lambda now, total: bar.update(job, completed=now))
        else:
            result = api.simulate(s)
        path = api.save_run(result, target, overwrite=overwrite)
    except ScenarioError as e:
        _fail(str(e))
    except store.RunExistsError as e:
        _fail(str(e))
    if as_json:
        out_console.print_json(json.dumps(result.summary))
    elif not quiet:
        out_console.print(summary_table(result.summary, f"{s.name} (seed {s.seed})"))
        m = result.manifest
        out_console.print(
            f"{m['calls']:,} calls simulated in {m['wall_s']:.2f} s wall ({m['calls_per_wall_s']:,.0f} calls/s)",
            highlight=False,
        )
    # With --json, stdout carries only the JSON document, so the path goes to stderr.
    (err_console if as_json else out_console).print(f"results: {path}", highlight=False, soft_wrap=True)
    if report_:
        _report_or_fail(path, None, err_console if as_json else out_console)


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: path.to[0].field=value")] = None,
) -> None:
    """Check a scenario: fields, catalog entries, memory fit. Exit 2 with each problem's path if invalid."""
    from agentsim.catalog import scenario_catalog
    from agentsim.resolve import plan_pools

    s = _load(scenario, set_, None)
    try:
        plans = plan_pools(s, scenario_catalog(s))  # the built-in catalog plus the scenario's `catalog` files
    except ScenarioError as e:
        _fail(str(e))
    out_console.print(f"[green]ok[/]: {scenario}: {len(s.workload)} workload(s), {len(plans)} pool(s)")
    for p in plans:
        d = p.spec.deployment
        out_console.print(
            f"  pool {p.spec.name}: {p.spec.replicas} x {d.model} on {d.gpus}x {d.hardware} "
            f"({d.precision}), KV capacity {p.kv_capacity_tokens:,} tokens per replica",
            highlight=False,
        )


@app.command()
def schema() -> None:
    """Print the JSON Schema of scenario files (for editor completion and validation)."""
    typer.echo(json.dumps(spec.Scenario.model_json_schema(), indent=2))


@app.command()
def example(
    name: Annotated[str, typer.Argument(help="which example")] = "default",
    list_: Annotated[bool, typer.Option("--list", help="list the built-in examples")] = False,
) -> None:
    """Print a built-in, commented example scenario to start from."""
    if list_:
        typer.echo("\n".join(api.example_names()))
        return
    try:
        typer.echo(api.example_text(name), nl=False)
    except ScenarioError as e:
        _fail(str(e))


def _tflops(x: float | None) -> str:
    """Peak TFLOPS without exponent notation (13125, not 1.312e+04)."""
    return "-" if x is None else (f"{x:.0f}" if x >= 1000 else _fmt(x))


@app.command()
def catalog(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
    extra: Annotated[
        list[Path] | None, typer.Option("--catalog", help="also a user catalog YAML file (repeatable)")
    ] = None,
) -> None:
    """Show the built-in hardware, models, agent profiles and prices (and those of user catalog files)."""
    from agentsim.catalog import CatalogFileError, load_catalog
    from agentsim.workload.profiles import builtin_profiles

    try:
        c = load_catalog(extra or [])
    except CatalogFileError as e:
        _fail(str(e))
    profiles = builtin_profiles()
    if as_json:
        doc = {
            "hardware": {k: v.model_dump() for k, v in c.hardware.items()},
            "models": {k: v.model_dump() for k, v in c.models.items()},
            "prices": {k: v.model_dump() for k, v in c.prices.items()},
            "profiles": {k: v.model_dump() for k, v in profiles.items()},
        }
        typer.echo(json.dumps(doc, indent=2))
        return
    t = Table(title="hardware", header_style="bold")
    for col in (
        "id",
        "bf16 TFLOPS",
        "fp8 TFLOPS",
        "fp4 TFLOPS",
        "HBM GB",
        "HBM TB/s",
        "DDR GB",
        "TDP W",
        "scale-up GB/s",
    ):
        t.add_column(col, justify="left" if col == "id" else "right", no_wrap=col == "id")
    for k, h in c.hardware.items():
        t.add_row(
            k,
            _tflops(h.bf16_dense_tflops),
            _tflops(h.fp8_dense_tflops),
            _tflops(h.fp4_dense_tflops),
            _fmt(h.hbm_gb),
            _fmt(h.hbm_tb_s),
            _fmt(h.ddr_gb),
            _fmt(h.tdp_w),
            _fmt(h.scaleup_gb_s_per_gpu),
        )
    out_console.print(t)
    t = Table(title="models", header_style="bold")
    t.add_column("id", no_wrap=True)
    for col in (
        "params B",
        "active B",
        "layers",
        "hidden",
        "heads",
        "kv heads",
        "head dim",
        "experts",
        "attn",
    ):
        t.add_column(col, justify="left" if col == "attn" else "right")
    for k, m in c.models.items():
        t.add_row(
            k,
            _fmt(m.params_b),
            _fmt(m.active_params_b),
            str(m.layers),
            str(m.hidden_size),
            str(m.heads),
            str(m.kv_heads),
            str(m.head_dim),
            f"{m.experts_per_token}/{m.experts}" if m.experts else "-",
            m.attention,
        )
    out_console.print(t)
    t = Table(title="prices ($/GPU-hour; all-in kW per GPU)", header_style="bold")
    for col in ("id", "rental_3y", "own_hyperscaler", "own_neocloud", "kW all-in"):
        t.add_column(col, justify="left" if col == "id" else "right", no_wrap=col == "id")
    for k, p in c.prices.items():
        t.add_row(
            k,
            _fmt(p.usd_per_hour("rental_3y")),
            _fmt(p.usd_per_hour("own_hyperscaler")),
            _fmt(p.usd_per_hour("own_neocloud")),
            _fmt(p.kw_all_in),
        )
    out_console.print(t)
    t = Table(title="agent profiles (means)", header_style="bold")
    for col in ("id", "system", "steps", "output", "tool result", "tool s", "fan-out"):
        t.add_column(col, justify="left" if col == "id" else "right", no_wrap=col == "id")
    from agentsim.workload.distributions import mean

    for k, a in profiles.items():
        t.add_row(
            k,
            _fmt(mean(a.system_prompt_tokens)),
            _fmt(mean(a.steps)),
            _fmt(mean(a.output_tokens)),
            _fmt(mean(a.tool_result_tokens)),
            _fmt(mean(a.tool_s)),
            _fmt(mean(a.fanout.subagents)) if a.fanout else "-",
        )
    out_console.print(t)


# ------------------------------------------------------------------------ report and compare (issue 7) -------
# Figures need the optional extra ``agentsim[report]`` (matplotlib, Jinja2); ``agentsim.report`` is imported here,
# in the commands, so the other commands never load it.


def _report_or_fail(run_dir: Path, out: Path | None = None, console: Console | None = None) -> Path:
    """Write ``report.html`` (and PNGs) for ``run_dir``; exit 2 with the reason if that is not possible."""
    from agentsim import report as rep

    try:
        page = rep.write_report(run_dir, out)
    except rep.ReportError as e:
        _fail(str(e))
    (console or out_console).print(f"report: {page}", highlight=False, soft_wrap=True)
    return page


def _report_deps(wanted: bool) -> bool:
    """``run --report``: fail before simulating, not after, when matplotlib or Jinja2 is missing."""
    if wanted:
        from agentsim import report as rep

        try:
            rep.require_report_deps()
        except rep.ReportError as e:
            _fail(str(e))
    return wanted


@app.command()
def report(
    run_dir: Annotated[
        Path, typer.Argument(help="a run directory (`agentsim run`) or a sweep directory (`agentsim sweep --out`)")
    ],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="where to write report.html and the PNGs (default: RUN_DIR)")
    ] = None,
) -> None:
    """Write a self-contained report.html (figures embedded) and one PNG per figure (needs matplotlib and Jinja2).

    A sweep directory (written by `agentsim sweep --out`, holding sweep.parquet) gets a sweep report instead."""
    if (run_dir / "sweep.parquet").is_file():
        from agentsim import report as rep

        try:
            page = rep.write_sweep_report(run_dir, out)
        except rep.ReportError as e:
            _fail(str(e))
        out_console.print(f"report: {page}", highlight=False, soft_wrap=True)
        return
    _report_or_fail(run_dir, out)


@app.command()
def compare(
    runs: Annotated[list[Path], typer.Argument(help="two or more run directories; the first is the baseline")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="also write compare.html with overlaid CDFs into this directory")
    ] = None,
) -> None:
    """Compare runs: summary metrics side by side with differences against the first (and an HTML report)."""
    from agentsim import report as rep

    if len(runs) < 2:
        _fail("compare needs at least two run directories")
    try:
        if out is not None:
            rep.require_report_deps()
        loaded = rep.load_runs(runs)
    except rep.ReportError as e:
        _fail(str(e))
    # Not a terminal (a pipe, a file): no width to fit, so do not squeeze the table into rich's default 80 columns.
    (out_console if out_console.is_terminal else Console(width=400)).print(rep.compare_table(loaded))
    if out is not None:
        try:
            page = rep.write_compare(loaded, out)
        except rep.ReportError as e:
            _fail(str(e))
        out_console.print(f"report: {page}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------ end of report and compare ------------


# ------------------------------------------------------------------------ sweep and plan (issue 5) -------------


def _split_values(raw: str) -> list[str]:
    """``4,8,{kind: poisson, rate_per_s: 2}`` -> its items: commas inside brackets, braces or quotes do not
    split."""
    items: list[str] = []
    depth = 0
    quote = ""
    cur = ""
    for ch in raw:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
            continue
        cur += ch
    items.append(cur.strip())
    return items


def _parse_param(text: str) -> tuple[str, list[Any]]:
    import yaml

    path, eq, raw = text.partition("=")
    if not eq or not path.strip() or not raw.strip():
        _fail(f"--param {text!r}: expected path.to.field=v1,v2,...")
    try:
        values = [yaml.safe_load(v) if v else v for v in _split_values(raw)]
    except yaml.YAMLError as e:
        _fail(f"--param {text!r}: a value is not valid YAML: {e}")
    return path.strip(), values


def _csv_list(text: str | None, what: str, cast: Any = str) -> list[Any]:
    if not text:
        return []
    try:
        return [cast(v.strip()) for v in text.split(",") if v.strip()]
    except ValueError:
        _fail(f"{what}: cannot read {text!r}")


def _pm(table: Any, name: str, row: int) -> str:
    mean = table.column(name)[row].as_py()
    ci = table.column(f"{name}.ci95")[row].as_py()
    if mean is None:
        return "-"
    return _fmt(mean, 3) + (f"±{_fmt(ci, 2)}" if ci is not None else "")


SWEEP_COLUMNS = (
    ("ttft p99", "ttft_s.p99"),
    ("tpot p99", "tpot_s.p99"),
    ("task p90", "task_s.p90"),
    ("tok/s", "output_tokens_per_s"),
    ("$/Mtok", "usd_per_mtok_output"),
    ("$/task", "usd_per_task"),
    ("SLO call", "slo_attainment.calls"),
    ("SLO task", "slo_attainment.tasks"),
    ("hit", "cache_hit_rate"),
)


def _sweep_table(table: Any, axes: list[str], title: str) -> Table:
    """Key metrics per point (mean ± 95% CI half-width); metrics null at every point are left out."""
    metrics = [
        (label, key)
        for label, key in SWEEP_COLUMNS
        if key in table.column_names and table.column(key).null_count < table.num_rows
    ]
    short = [a.rsplit(".", 1)[-1] for a in axes]
    heads = [s if short.count(s) == 1 else a for s, a in zip(short, axes, strict=True)]
    caption = ", ".join(f"{h}: {a}" for h, a in zip(heads, axes, strict=True))
    t = Table(title=title, header_style="bold", caption=caption)
    t.add_column("#", justify="right")
    for h in heads:
        t.add_column(h)
    for label, _ in metrics:
        t.add_column(label, justify="right")
    for i in range(table.num_rows):
        cells = [str(i)] + [str(table.column(a)[i].as_py()) for a in axes]
        t.add_row(*cells, *(_pm(table, key, i) for _, key in metrics))
    return t


@app.command("sweep")
def sweep_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="an axis: path.to.field=v1,v2,v3 (values read as YAML); repeatable"),
    ] = None,
    zip_: Annotated[bool, typer.Option("--zip", help="pair the axes element by element instead of crossing")] = False,
    replications: Annotated[int, typer.Option("--replications", "-r", min=1, help="seeds per point")] = 1,
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="local processes (default: all cores)")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="sweep directory; rerun to resume")] = None,
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler address, e.g. tcp://host:8786")] = None,
    keep_tables: Annotated[bool, typer.Option(help="store each run's Parquet tables too")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a base field: path=value")] = None,
    seed: Annotated[int | None, typer.Option(help="override the base seed")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar, no table")] = False,
) -> None:
    """Run a scenario over a grid of parameter values with replications; resumable; writes sweep.parquet."""
    from agentsim.planning.sweep import executor_session
    from agentsim.planning.sweep import sweep as run_sweep

    base = _load(scenario, set_, seed)
    axes: dict[str, list[Any]] = {}
    for p in param or []:
        path, values = _parse_param(p)
        axes[path] = values
    target = out if out is not None else store.new_run_dir(Path("sweeps"), base.name)
    show = not quiet and sys.stderr.isatty()
    try:
        with executor_session(dask, workers) as (ex, n):
            if show:
                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                with Progress(
                    TextColumn("sweep"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("points"),
                    TimeElapsedColumn(),
                    console=err_console,
                    transient=True,
                ) as bar:
                    job = bar.add_task("sweep", total=None)
                    table = run_sweep(
                        base, axes, replications=replications, zip=zip_, executor=ex, workers=n, out=target,
                        keep_tables=keep_tables, progress=lambda d, total: bar.update(job, completed=d, total=total),
                    )  # fmt: skip
            else:
                table = run_sweep(
                    base, axes, replications=replications, zip=zip_, executor=ex, workers=n, out=target,
                    keep_tables=keep_tables,
                )  # fmt: skip
    except (ScenarioError, ValueError) as e:
        _fail(str(e))
    except (ImportError, OSError) as e:
        _fail(str(e), 1)
    if not quiet:
        title = f"{base.name}: {table.num_rows} points x {replications} replications (mean ± 95% CI)"
        out_console.print(_sweep_table(table, list(axes), title))
    out_console.print(f"results: {target / 'sweep.parquet'}", highlight=False, soft_wrap=True)


@app.command("plan")
def plan_cmd(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML")],
    slo: Annotated[
        list[str] | None,
        typer.Option(help="a target: ttft_p99_s=2, task_p95_s=900, tpot_mean_s=0.05, ttft_s=2 (with --attainment)"),
    ] = None,
    hardware: Annotated[str | None, typer.Option(help="candidate hardware, comma-separated")] = None,
    tp: Annotated[str | None, typer.Option(help="candidate tensor-parallel sizes, comma-separated")] = None,
    attainment: Annotated[float, typer.Option(help="fraction within a plain threshold (ttft_s=...)")] = 0.9,
    max_replicas: Annotated[int, typer.Option(min=1, help="largest replica count to try")] = 256,
    replications: Annotated[int, typer.Option("--replications", "-r", min=1, help="seeds per evaluation")] = 3,
    rank: Annotated[str, typer.Option(help="rank by usd_per_hour or usd_per_mtok")] = "usd_per_hour",
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="local processes (default: all cores)")] = None,
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler address, e.g. tcp://host:8786")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="save the result: .json, .parquet or .csv")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a base field: path=value")] = None,
    seed: Annotated[int | None, typer.Option(help="override the base seed")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress, no table")] = False,
) -> None:
    """The fewest replicas of each hardware x tp that meet the SLOs, ranked by $/hour and $/Mtok."""
    import yaml

    from agentsim.planning.plan import plan as run_plan
    from agentsim.planning.sweep import executor_session

    base = _load(scenario, set_, seed)
    slos: dict[str, float] = {}
    for s in slo or []:
        key, eq, raw = s.partition("=")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = None
        if not eq or not isinstance(value, int | float) or isinstance(value, bool):
            _fail(f"--slo {s!r}: expected name=seconds, e.g. ttft_p99_s=2")
        slos[key.strip()] = float(value)
    if not slos:
        _fail("give at least one --slo, e.g. --slo ttft_p99_s=2")
    if rank not in ("usd_per_hour", "usd_per_mtok"):
        _fail(f"--rank must be usd_per_hour or usd_per_mtok, got {rank!r}")
    if out is not None and out.suffix.lower() not in (".json", ".parquet", ".csv"):
        _fail(f"--out {out}: use a .json, .parquet or .csv file")
    hw = _csv_list(hardware, "--hardware")
    tps = _csv_list(tp, "--tp", int)
    show = not quiet and not as_json and sys.stderr.isatty()
    try:
        with executor_session(dask, workers) as (ex, n):
            kwargs: dict[str, Any] = {
                "hardware": hw, "tp": tps, "attainment": attainment, "max_replicas": max_replicas,
                "replications": replications, "rank_by": rank, "executor": ex, "workers": n,
            }  # fmt: skip
            if show:
                with err_console.status("planning") as status:
                    result = run_plan(base, slos, progress=lambda m: status.update(f"trying {m}"), **kwargs)
            else:
                result = run_plan(base, slos, **kwargs)
    except (ScenarioError, ValueError) as e:
        _fail(str(e))
    except (ImportError, OSError) as e:
        _fail(str(e), 1)
    if out is not None:
        result.save(out)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        t = Table(title=f"{base.name}: fewest replicas meeting {', '.join(f'{k}={v:g}' for k, v in slos.items())}")
        for c in ("rank", "hardware", "tp", "replicas", "GPUs", "$/hour", "$/Mtok out", "$/task", *slos, "status"):
            t.add_column(c, justify="left" if c in ("hardware", "status") else "right")
        r = 0
        for row in result.rows:
            r += row.status == "ok"
            t.add_row(
                str(r) if row.status == "ok" else "-", row.hardware, str(row.tp), _fmt(row.replicas), _fmt(row.gpus),
                _fmt(row.usd_per_hour), _fmt(row.usd_per_mtok_output), _fmt(row.usd_per_task),
                *(_fmt(row.stats.get(k)) for k in slos),
                row.status if row.reason is None else f"{row.status}: {row.reason}",
            )  # fmt: skip
        out_console.print(t)
    if out is not None:
        (err_console if as_json else out_console).print(f"results: {out}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------ end of sweep and plan ----------------


# ------------------------------------------------------------------------ trace (issue 3) ------------------------
# `agentsim trace import|stats|generate|fit|export`: the commands live in agentsim/tracecli.py.

from agentsim.cli.trace import trace_app  # noqa: E402

app.add_typer(trace_app, name="trace")

# ------------------------------------------------------------------------ end of trace ---------------------------


# ------------------------------------------------------------------------ calibrate and fidelity (issue 4) -------
# `agentsim calibrate` fits perf coefficients to benchmark measurements through the simulator; `agentsim fidelity`
# simulates measured points and reports the error. The logic lives in agentsim.planning.calibrate and
# agentsim.planning.fidelity.


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``["hardware=H200", "n_gpus=1"]`` -> a dict; exit 2 on a malformed item."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"{what} expects column=value, got {item!r}")
        out[key.strip().lower()] = value.strip()
    return out


def _harness(admission: str, kv_free_fraction: float | None, waves: float) -> Any:
    from agentsim.planning.calibrate import HarnessOptions

    if admission not in ("auto", "engine", "no-evict"):
        _fail(f"--admission must be auto, engine or no-evict, not {admission!r}")
    if kv_free_fraction is not None and not 0 < kv_free_fraction <= 1:
        _fail("--kv-free-fraction must be in (0, 1]")
    return HarnessOptions(admission=admission, kv_free_fraction=kv_free_fraction, waves=waves)  # type: ignore[arg-type]


def _bench_pool(scenario: Path | None, pool: str | None, set_: list[str] | None) -> tuple[Any, list[str]]:
    """The pool named by --scenario/--pool (the first pool without --pool) and the scenario's catalog files."""
    if scenario is None:
        if pool is not None or set_:
            _fail("--pool and --set need --scenario")
        return None, []
    s = _load(scenario, set_, None)
    pools = {p.name: p for p in s.cluster.pools}
    if pool is not None and pool not in pools:
        _fail(f"no pool {pool!r} in {scenario}; pools: {', '.join(pools)}")
    return pools[pool] if pool is not None else s.cluster.pools[0], list(s.catalog)


def _measurements(path: Path, where: list[str] | None) -> list[Any]:
    from agentsim.planning.calibrate import CalibrationError, filter_measurements, read_measurements

    try:
        ms = read_measurements(path)
    except CalibrationError as e:
        _fail(str(e))
    selected = filter_measurements(ms, _pairs(where, "--where"))
    if not selected:
        _fail(f"{path}: no measurement matches --where {' '.join(where or [])}")
    return selected


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def _mape_txt(x: float | None) -> str:
    return "-" if x is None else f"{x:.1f}%"


@app.command("calibrate")
def calibrate_cmd(
    measurements: Annotated[Path, typer.Argument(help="benchmark results: CSV, vLLM or AIPerf JSON")],
    scenario: Annotated[Path | None, typer.Option(help="scenario whose pool is calibrated")] = None,
    pool: Annotated[str | None, typer.Option(help="pool of --scenario (default: its first)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field of --scenario")] = None,
    where: Annotated[list[str] | None, typer.Option(help="keep rows with column=value (repeatable)")] = None,
    kind: Annotated[str, typer.Option(help="perf model without --scenario: roofline or linear")] = "roofline",
    params: Annotated[str | None, typer.Option(help="coefficients to fit, comma-separated (default per kind)")] = None,
    metrics: Annotated[str | None, typer.Option(help="output_tok_s,ttft_s,tpot_s to fit (default: all)")] = None,
    admission: Annotated[str, typer.Option(help="auto | engine | no-evict (TensorRT-LLM's scheduler)")] = "auto",
    kv_free_fraction: Annotated[
        float | None, typer.Option(help="KV = this fraction of HBM left by the weights (TensorRT-LLM's rule)")
    ] = None,
    waves: Annotated[float, typer.Option(help="request lifetimes simulated per condition")] = 3.0,
    max_evals: Annotated[int, typer.Option(help="simulations per point budget of the search")] = 150,
    jobs: Annotated[int, typer.Option(help="worker processes")] = 1,
    catalog_file: Annotated[list[Path] | None, typer.Option("--catalog", help="user catalog YAML (repeatable)")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="perf YAML to write")] = Path("perf.yaml"),
) -> None:
    """Fit a pool's perf coefficients to benchmark measurements by simulating every condition; write a perf YAML."""
    from agentsim.catalog import CatalogFileError, load_catalog
    from agentsim.planning import calibrate as cal

    ms = _measurements(measurements, where)
    base, scenario_files = _bench_pool(scenario, pool, set_)
    files = [*scenario_files, *[str(p) for p in catalog_file or []]]
    try:
        catalog = load_catalog(files)
        if base is None:
            if kind not in ("roofline", "linear"):
                _fail(f"--kind must be roofline or linear, not {kind!r}")
            pools = {cal.pool_from_labels(m, catalog).deployment for m in ms}
            if len(pools) > 1:
                _fail(
                    f"the rows describe {len(pools)} deployments; narrow them with --where (e.g. hardware=..., "
                    "model=..., n_gpus=...) or give --scenario/--pool"
                )
            base = cal.pool_from_labels(ms[0], catalog)
            if kind == "linear":
                base = cal.with_perf(base, spec.LinearPerf(alpha_s=0.0))
        result = cal.calibrate(
            ms,
            base,
            catalog=catalog,
            params=_csv_list(params, "--params") or None,
            metrics=_csv_list(metrics, "--metrics") or None,
            options=_harness(admission, kv_free_fraction, waves),
            max_evals=max_evals,
            jobs=jobs,
            catalog_files=files,
        )
    except (cal.CalibrationError, CatalogFileError, ScenarioError, ValueError) as e:
        _fail(str(e))
    t = Table(title=f"calibration of {result.pool.deployment.model} on {result.pool.deployment.hardware}")
    t.add_column("isl/osl load")
    for m in result.metrics:
        t.add_column(f"{m} meas", justify="right")
        t.add_column("pred", justify="right")
        t.add_column("err", justify="right")
    for p in result.points:
        cells = [p.measurement.describe()]
        for m in result.metrics:
            cells += [_fmt(getattr(p.measurement, m)), _fmt(p.predicted.get(m)), _pct(p.error_pct(m))]
        t.add_row(*cells)
    out_console.print(t)
    fitted = ", ".join(
        f"{n} = {getattr(result.perf, n):.4g} (from {getattr(result.start, n):.4g})" for n in result.params
    )
    out_console.print(f"fitted: {fitted}", highlight=False)
    mapes = ", ".join(
        f"{m} {_mape_txt(result.mape(m))} (start {_mape_txt(result.mape(m, start=True))})" for m in result.metrics
    )
    out_console.print(f"MAPE: {mapes}; {result.evaluations} evaluations", highlight=False)
    path = cal.write_perf_yaml(result, out, measurements_file=str(measurements))
    out_console.print(f"perf: {path}", highlight=False, soft_wrap=True)


@app.command("fidelity")
def fidelity_cmd(
    points: Annotated[Path, typer.Argument(help="measured points: CSV, vLLM benchmark_serving JSON, AIPerf JSON")],
    perf: Annotated[list[Path] | None, typer.Option(help="perf YAML from `agentsim calibrate` (repeatable)")] = None,
    scenario: Annotated[Path | None, typer.Option(help="simulate this scenario's pool, not the rows' labels")] = None,
    pool: Annotated[str | None, typer.Option(help="pool of --scenario (default: its first)")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field of --scenario")] = None,
    where: Annotated[list[str] | None, typer.Option(help="keep rows with column=value (repeatable)")] = None,
    holdout: Annotated[int, typer.Option(help="calibrate on K rows per group, report the held-out rows")] = 0,
    admission: Annotated[str, typer.Option(help="auto | engine | no-evict (TensorRT-LLM's scheduler)")] = "auto",
    kv_free_fraction: Annotated[
        float | None, typer.Option(help="KV = this fraction of HBM left by the weights (TensorRT-LLM's rule)")
    ] = None,
    waves: Annotated[float, typer.Option(help="request lifetimes simulated per point")] = 4.0,
    max_evals: Annotated[int, typer.Option(help="with --holdout: simulations budget of each fit")] = 120,
    jobs: Annotated[int, typer.Option(help="worker processes")] = 1,
    catalog_file: Annotated[list[Path] | None, typer.Option("--catalog", help="user catalog YAML (repeatable)")] = None,
    rows: Annotated[bool, typer.Option("--rows", help="print every row, not only the groups")] = False,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="write predicted vs measured per row")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG of predicted vs measured (needs matplotlib)")] = Path(
        "fidelity.png"
    ),
    no_plot: Annotated[bool, typer.Option("--no-plot", help="do not draw the PNG")] = False,
) -> None:
    """Simulate measured benchmark points; print predicted vs measured and the MAPE per metric (and a plot)."""
    from agentsim.catalog import CatalogFileError, load_catalog
    from agentsim.planning import calibrate as cal
    from agentsim.planning import fidelity as fid

    ms = _measurements(points, where)
    base, scenario_files = _bench_pool(scenario, pool, set_)
    files = [*scenario_files, *[str(p) for p in catalog_file or []]]
    options = _harness(admission, kv_free_fraction, waves)
    try:
        catalog = load_catalog(files)
        overrides = [fid.PerfOverride(*cal.load_perf_yaml(p)) for p in perf or []]
        if holdout > 0:
            if overrides:
                _fail("--holdout calibrates its own perf; drop --perf")
            result = fid.holdout(
                ms,
                k=holdout,
                pool=base,
                catalog=catalog,
                options=options,
                max_evals=max_evals,
                jobs=jobs,
                catalog_files=files,
                progress=lambda group, fit: err_console.print(
                    f"calibrated {group}: "
                    + ", ".join(f"{n} {getattr(fit.perf, n):.3g}" for n in fit.params)
                    + f" ({fit.evaluations} evaluations)",
                    highlight=False,
                ),
            )
            reports = [result.default, result.calibrated]
        else:
            reports = [
                fid.run_fidelity(
                    ms,
                    pool=base,
                    overrides=overrides,
                    catalog=catalog,
                    options=options,
                    jobs=jobs,
                    catalog_files=files,
                    title="calibrated" if overrides else "default",
                )
            ]
    except (cal.CalibrationError, CatalogFileError, ScenarioError, ValueError) as e:
        _fail(str(e))
    last = reports[-1]
    metrics = last.metrics()
    t = Table(title=f"fidelity: {points.name} ({len(ms)} points)", header_style="bold")
    t.add_column("group")
    t.add_column("n", justify="right")
    for r in reports:
        for m in metrics:
            label = f"{m} MAPE" + (" held-out" if r.title == "calibrated" and holdout else f" {r.title}")
            t.add_column(label, justify="right")
    for g in [*last.groups(), "all"]:
        group = None if g == "all" else g
        n = len([x for x in last.select(group=group) if x.error is None])
        cells = [g, str(n)]
        for r in reports:
            role = "held-out" if r.title == "calibrated" and holdout else None
            cells += [_mape_txt(r.mape(m, role=role, group=group)) for m in metrics]
        t.add_row(*cells, end_section=g == last.groups()[-1])
    out_console.print(t)
    if rows:
        rt = Table(title="rows", header_style="bold")
        for col in ("group", "isl/osl load", "role"):
            rt.add_column(col)
        for m in metrics:
            rt.add_column(f"{m} meas", justify="right")
            rt.add_column("pred", justify="right")
            rt.add_column("err", justify="right")
        for x in last.rows:
            cells = [x.group, x.measurement.describe(), x.role]
            for m in metrics:
                cells += [_fmt(getattr(x.measurement, m)), _fmt(x.predicted.get(m)), _pct(x.error_pct(m))]
            rt.add_row(*cells)
        out_console.print(rt)
    for x in last.failures():
        err_console.print(f"not simulated: {x.group} {x.measurement.describe()}: {x.error}", highlight=False)
    if csv_out is not None:
        out_console.print(f"rows: {last.write_csv(csv_out)}", highlight=False, soft_wrap=True)
    if plot is not None and not no_plot:
        try:
            out_console.print(f"plot: {fid.plot_fidelity(last, plot)}", highlight=False, soft_wrap=True)
        except ImportError:
            err_console.print("no plot: matplotlib is not installed (pip install 'agentsim[report]')")


# ------------------------------------------------------------------------ end of calibrate and fidelity ---------


def main() -> None:
    """Entry point of the ``agentsim`` console script."""
    app()
