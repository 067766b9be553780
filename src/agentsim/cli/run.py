"""``agentsim run``, ``validate``, ``schema``, ``example`` and ``catalog``: simulate one scenario and the
commands that help write one (check it, print its schema or a built-in example, show the catalog it draws on).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agentsim import api, spec, store
from agentsim.cli.common import (
    MAX_MEMORY,
    _check_out,
    _fail_scenario,
    _fmt,
    _load,
    _report_or_fail,
    print_warnings,
    summary_table,
)
from agentsim.cli.console import err_console, out_console
from agentsim.cli.console import fail as _fail
from agentsim.errors import ScenarioError
from agentsim.preflight import PreflightError


def _report_deps(wanted: bool) -> bool:
    """``run --report``: fail before simulating, not after, when matplotlib or Jinja2 is missing."""
    if wanted:
        from agentsim import report as rep

        try:
            rep.require_report_deps()
        except rep.ReportError as e:
            _fail(str(e))
    return wanted


def run(
    scenario: Annotated[Path | None, typer.Argument(help="scenario YAML; omit for the built-in default")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="output directory (default: a new runs/...)")] = None,
    seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: path.to[0].field=value")] = None,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out directory")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar, no table")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    report_: Annotated[bool, typer.Option("--report", callback=_report_deps, help="also write report.html")] = False,
    strict: Annotated[bool, typer.Option("--strict", help="exit 3 when the run has warnings")] = False,
    max_memory: Annotated[float | None, MAX_MEMORY] = None,
) -> None:
    """Simulate a scenario and write calls/tasks/replicas Parquet tables, summary.json and manifest.json.

    The summary's warnings (heavy censoring, small samples, overload, context-window rejections, a step-time
    model that public measurements put off by more than 15%, or that no public measurement covers) are printed;
    with --strict they make the exit code 3 (the results are written all the same)."""
    s = _load(scenario, set_, seed)
    target = out if out is not None else store.new_run_dir(Path("runs"), s.name)
    if target.exists() and not overwrite:
        _fail(f"{target} already exists; choose another --out or pass --overwrite")
    _check_out(target, overwrite=overwrite, directory=True)
    show = not quiet and not as_json and sys.stderr.isatty()
    reached = [0.0]  # the simulated time reached, for the message of an interrupted run
    t0 = time.perf_counter()

    def track(now: float, total: float) -> None:
        reached[0] = now

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


                def advance(now: float, total: float) -> None:
                    reached[0] = now
                    bar.update(job, completed=now)

                result = api.simulate(s, progress=advance, workdir=target.parent, max_memory_mb=max_memory)
        else:
            # spill files beside the run: saved by a rename
            result = api.simulate(s, progress=track, workdir=target.parent, max_memory_mb=max_memory)
        path = api.save_run(result, target, overwrite=overwrite)
    except KeyboardInterrupt:
        _fail(f"interrupted at {reached[0]:,.0f} of {s.horizon_s:,.0f} simulated s ({time.perf_counter() - t0:.0f} s "
              f"wall): nothing was written to {target} (a run's directory appears only when it finishes); "
              "rerun to start again.", 130)  # fmt: skip
    except PreflightError as e:  # the estimate (memory, disk), not a field of the file
        _fail(str(e))
    except ScenarioError as e:
        _fail_scenario(e, scenario, set_)
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
    if not quiet:
        print_warnings(result.summary, err_console)
    if strict and result.summary.get("warnings"):
        raise typer.Exit(3)


def validate(
    scenario: Annotated[Path, typer.Argument(help="scenario YAML")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a field: path.to[0].field=value")] = None,
) -> None:
    """Check a scenario: fields, catalog entries, memory fit. Exit 2 with each problem's path if invalid. Prints
    each pool's step-time accuracy on public data, and the warnings a run would give of it."""
    from agentsim.analysis.accuracy import accuracy_cell, resolved_accuracy
    from agentsim.resolve import resolve

    s = _load(scenario, set_, None)
    try:
        resolved = resolve(s)  # the built-in catalog plus the scenario's `catalog` files
    except ScenarioError as e:
        _fail_scenario(e, scenario, set_)
    out_console.print(f"[green]ok[/]: {scenario}: {len(s.workload)} workload(s), {len(resolved.pools)} pool(s)")
    accuracy, warned = resolved_accuracy(resolved)
    for p in resolved.plans:
        d = p.spec.deployment
        out_console.print(
            f"  pool {p.spec.name}: {p.spec.replicas} x {d.model} on {d.gpus}x {d.hardware} "
            f"({d.precision}), KV capacity {p.kv_capacity_tokens:,} tokens per replica; step-time model MAPE "
            f"tok/s / TPOT on public data: {accuracy_cell(accuracy[p.spec.name])}",
            highlight=False,
        )
    # what the run would warn of its pools' step times: known before it runs (exit 0 all the same)
    print_warnings({"warnings": warned}, err_console)


def schema() -> None:
    """Print the JSON Schema of scenario files (for editor completion and validation)."""
    typer.echo(json.dumps(spec.Scenario.model_json_schema(), indent=2))


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
    t = Table(
        title="hardware",
        header_style="bold",
        caption="seen GiB: the memory the driver shows a serving engine (as vLLM logs it); ~ not logged: for a GPU "
        "0.99 x its HBM read as GiB",
    )
    for col in (
        "id",
        "bf16 TFLOPS",
        "fp8 TFLOPS",
        "fp4 TFLOPS",
        "HBM GB",
        "seen GiB",
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
            _fmt(h.device_memory_bytes / 2**30) if h.device_memory_logged else f"~{h.device_memory_bytes / 2**30:.0f}",
            _fmt(h.hbm_tb_s),
            _fmt(h.ddr_gb),
            _fmt(h.tdp_w),
            _fmt(h.scaleup_gb_s_per_gpu),
        )
    out_console.print(t)
    t = Table(title="models (window: context tokens, prompt + output)", header_style="bold")
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
        "window",
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
            f"{m.max_context_tokens:,}",
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
