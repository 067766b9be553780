"""The ``agentsim`` command line: a thin shell over :mod:`agentsim.api`.

Exit codes: 0 success; 2 bad input (the scenario, an override, an existing output directory), with the field
path and the reason on stderr and no traceback; 1 a run that failed for another reason.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from agentsim import api, spec, store
from agentsim.errors import ScenarioError

app = typer.Typer(
    name="agentsim",
    help="Simulate agentic LLM workloads on modeled serving clusters: latency, tokens, $ per token and per task.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

out_console = Console()
err_console = Console(stderr=True)


def _fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _load(scenario: Path | None, overrides: list[str] | None, seed: int | None) -> spec.Scenario:
    try:
        if scenario:
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


@app.command()
def validate(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: path.to[0].field=value")] = None,
) -> None:
    """Check a scenario: fields, catalog entries, memory fit. Exit 2 with each problem's path if invalid."""
    from agentsim.catalog import load_catalog
    from agentsim.check import plan_pools

    s = _load(scenario, set_, None)
    try:
        plans = plan_pools(s, load_catalog())
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


@app.command()
def catalog(
    as_json: Annotated[bool, typer.Option("--json", help="print as JSON")] = False,
) -> None:
    """Show the built-in hardware, models, agent profiles and prices."""
    from agentsim.catalog import load_catalog
    from agentsim.workload.profiles import builtin_profiles

    c = load_catalog()
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
        "TDP W",
        "scale-up GB/s",
    ):
        t.add_column(col, justify="left" if col == "id" else "right", no_wrap=col == "id")
    for k, h in c.hardware.items():
        t.add_row(
            k,
            _fmt(h.bf16_dense_tflops),
            _fmt(h.fp8_dense_tflops),
            _fmt(h.fp4_dense_tflops),
            _fmt(h.hbm_gb),
            _fmt(h.hbm_tb_s),
            _fmt(h.tdp_w),
            _fmt(h.scaleup_gb_s_per_gpu),
        )
    out_console.print(t)
    t = Table(title="models", header_style="bold")
    t.add_column("id", no_wrap=True)
    for col in (
        "id",
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
        t.add_column(col, justify="left" if col in ("id", "attn") else "right")
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


def main() -> None:
    """Entry point of the ``agentsim`` console script."""
    app()
