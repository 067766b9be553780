"""``agentsim plan``: the cheapest deployment that meets the SLOs, how sure, and the configs to launch it.

The planning modules are imported inside the command, not when the CLI loads.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.table import Table

from agentsim.analysis.accuracy import mape_text
from agentsim.cli.common import MAX_MEMORY, _check_out, _csv_list, print_warnings
from agentsim.cli.console import err_console, out_console
from agentsim.cli.console import fail as _fail
from agentsim.errors import ScenarioError
from agentsim.yamlio import loads

if TYPE_CHECKING:
    from agentsim.planning.plan import PlanResult

EMIT_KINDS = ("vllm", "sglang", "dynamo", "llm-d")  # planning.plan.emit.KINDS, for --help without importing it


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x != x or x in (float("inf"), float("-inf")):
        return "inf" if x == float("inf") else str(x)
    return f"{x:.4g}"


def _raw_base(scenario: Path | None) -> tuple[dict[str, Any], str]:
    from agentsim.spec import load

    try:
        if scenario and not scenario.exists() and str(scenario) in load.example_names():
            return loads(load.example_text(str(scenario))), f"built-in example {scenario}"
        if scenario:
            data = load.read_data(scenario)
            if not isinstance(data, dict):
                _fail(f"{scenario}: expected a mapping at the top level")
            return data, str(scenario)
        return loads(load.example_text("default")), "built-in default scenario"
    except ScenarioError as e:
        _fail(str(e))


def _slos(items: list[str] | None) -> dict[str, float]:
    from agentsim.planning.plan.slo import parse_slo

    out: dict[str, float] = {}
    for s in items or []:
        key, eq, raw = s.partition("=")
        try:
            value = loads(raw)
        except yaml.YAMLError:
            value = None
        if isinstance(value, str):  # YAML reads 1e-6 as text: take any float Python reads
            try:
                value = float(value)
            except ValueError:
                value = None
        if not eq or not isinstance(value, int | float) or isinstance(value, bool):
            _fail(f"--slo {s!r}: expected name=seconds, e.g. ttft_p99_s=2")
        try:
            parse_slo(key.strip(), float(value))  # the name's grammar, a positive finite target
        except ValueError as e:
            _fail(f"--slo {s!r}: {e}")
        out[key.strip()] = float(value)
    if not out:
        _fail("give at least one --slo, e.g. --slo ttft_p99_s=2")
    return out


def _cells(result: PlanResult) -> list[list[str]]:
    rows = []
    for rank, row in zip(result.ranks(), result.rows, strict=True):
        cells = ["-" if rank is None else str(rank), row.label, _num(row.replicas), _num(row.gpus),
                 _num(row.usd_per_hour), _num(row.usd_per_mtok_output)]  # fmt: skip
        for k in result.slos:
            e = row.slos.get(k)
            if e is None:
                cells.append("-")
            elif e.lo is None:
                cells.append(_num(e.value))
            else:
                cells.append(f"{_num(e.value)}\n[{_num(e.lo)}, {_num(e.hi)}]")
        cells.append(mape_text(row.model_error_pct))  # the step-time model's public-data MAPE (analysis/accuracy.py)
        cells.append(row.status if row.reason is None else f"{row.status}: {row.reason}")
        rows.append(cells)
    return rows


def result_table(result: PlanResult) -> tuple[Table, int]:
    """The ranked candidates: deployment names and reasons wrap; numbers never wrap (each SLO's value over its
    95% interval). Also the least width it needs without cutting a number."""
    from rich import box

    t = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False)
    cells = _cells(result)
    rank_w = max(1, *(len(r[0]) for r in cells)) if cells else 1
    t.add_column("#", justify="right", no_wrap=True, min_width=rank_w)
    t.add_column("deployment", overflow="fold", ratio=1, min_width=12)
    need = rank_w + 12 + 7
    heads = ["replicas", "GPUs", "$/hour", "$/Mtok", *result.slos, "model err"]
    for j, c in enumerate(heads, start=2):
        width = max([len(c)] + [len(line) for r in cells for line in r[j].split("\n")])
        t.add_column(c, justify="right", no_wrap=True, min_width=width)
        need += width
    t.add_column("status", overflow="fold", ratio=1, min_width=7)
    for r in cells:
        t.add_row(*r)
    return t, need + 2 * (len(heads) + 2)  # one space each side between columns


def _cards(result: PlanResult) -> list[str]:
    """The same rows as :func:`result_table`, one block each, for terminals too narrow for the table."""
    lines = []
    for r, row in zip(_cells(result), result.rows, strict=True):
        lines.append(f"{r[0]}. {row.label}: {r[2]} replicas, {r[3]} GPUs, ${r[4]}/hour, ${r[5]}/Mtok, model "
                     f"error {r[-2]}; {r[-1]}")  # fmt: skip
        for k, cell in zip(result.slos, r[6:-2], strict=True):
            lines.append(f"   {k} {cell.replace(chr(10), ' ')} (target {result.slos[k]:g})")
    return lines


def print_result(result: PlanResult, label: str) -> None:
    """Title, then the table when it fits the console's width, else one block per candidate: a value is never
    cut."""
    slos = ", ".join(f"{k} <= {v:g}" for k, v in result.slos.items())
    out_console.print(f"{label}, {result.model}: {slos} (95% confidence)", highlight=False)
    table, need = result_table(result)
    if need <= out_console.width:
        out_console.print(table)
    else:
        for line in _cards(result):
            out_console.print(line, highlight=False)


def plan_cmd(
    scenario: Annotated[
        Path | None, typer.Argument(help="scenario YAML or built-in example (default: the default)")
    ] = None,
    slo: Annotated[
        list[str] | None,
        typer.Option(help="a target: ttft_p99_s=2, task_p95_s=900, tpot_mean_s=0.05, ttft_s=2 (with --attainment)"),
    ] = None,
    hardware: Annotated[
        str | None, typer.Option(help="hardware to try, comma-separated (default: the scenario's)")
    ] = None,
    tp: Annotated[str | None, typer.Option(help="tensor-parallel sizes (default: 1,2,4,8)")] = None,
    pp: Annotated[str | None, typer.Option(help="pipeline-parallel sizes (default: the scenario's)")] = None,
    parallel: Annotated[
        str | None, typer.Option(help="MoE modes: tp, ep, ep-dpa (default: all three for MoE models)")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="weight precisions: bf16, fp8, fp4")] = None,
    kv_precision: Annotated[str | None, typer.Option(help="KV-cache precisions: bf16, fp8, fp4")] = None,
    max_num_seqs: Annotated[str | None, typer.Option(help="batch limits to try")] = None,
    preset: Annotated[str | None, typer.Option(help="engine presets to try")] = None,
    topology: Annotated[
        str | None, typer.Option(help="aggregated and/or prefill:decode ratios, e.g. aggregated,1:1,1:3")
    ] = None,
    attainment: Annotated[float, typer.Option(help="fraction within a plain threshold (ttft_s=...)")] = 0.9,
    max_replicas: Annotated[int, typer.Option(min=1, help="largest replica count to try")] = 256,
    replications: Annotated[int, typer.Option("--replications", "-r", min=2, help="seeds per count at first")] = 3,
    max_replications: Annotated[int, typer.Option(min=1, help="seeds per count at most (marginal counts)")] = 10,
    screen: Annotated[float, typer.Option(help="length of the short screening runs, as a share of the window")] = 0.25,
    screen_replications: Annotated[int, typer.Option(min=1, help="seeds per short screening run")] = 2,
    all_: Annotated[
        bool, typer.Option("--all", help="search every candidate to its answer (no pruning of costlier ones)")
    ] = False,
    rank: Annotated[str, typer.Option(help="rank by usd_per_hour or usd_per_mtok")] = "usd_per_hour",
    workers: Annotated[int | None, typer.Option("--workers", "-w", help="local processes (default: all cores)")] = None,
    dask: Annotated[str | None, typer.Option("--dask", help="Dask scheduler address, e.g. tcp://host:8786")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="save the plan: .json (full), .parquet, .csv")] = None,
    emit: Annotated[
        list[str] | None, typer.Option(help=f"write the chosen deployment's launch config: {', '.join(EMIT_KINDS)}")
    ] = None,
    emit_dir: Annotated[Path, typer.Option(help="where --emit writes its files")] = Path("."),
    overwrite: Annotated[bool, typer.Option(help="replace existing --out / --emit files")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="override a base field: path=value")] = None,
    seed: Annotated[int | None, typer.Option(help="override the base seed")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the result as JSON")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="no progress, no table")] = False,
    max_memory: Annotated[float | None, MAX_MEMORY] = None,
) -> None:
    """The fewest replicas of each candidate deployment that meet the SLOs at 95% confidence, ranked by cost.

    Candidates: hardware x tp x pp x MoE parallelism x precisions x batch limit x preset x topology. Each axis
    has a default (every TP that fits, all three MoE modes for MoE models, the scenario's values otherwise) and
    an option to narrow it. Exit 3 when no candidate meets the SLOs.
    """
    from agentsim.planning.plan import Space, plan
    from agentsim.planning.plan.emit import EmitError, emit_files
    from agentsim.planning.sweep import executor_session

    data, label = _raw_base(scenario)
    overrides = list(set_ or [])
    if seed is not None:
        overrides.append(f"seed={seed}")
    slos = _slos(slo)
    if rank not in ("usd_per_hour", "usd_per_mtok"):
        _fail(f"--rank must be usd_per_hour or usd_per_mtok, got {rank!r}")
    if out is not None and out.suffix.lower() not in (".json", ".parquet", ".csv"):
        _fail(f"--out {out}: use a .json, .parquet or .csv file")
    _check_out(out, overwrite=overwrite)
    if emit:
        _check_out(emit_dir / "launch-config", overwrite=True)  # the directory takes new files
    if emit:
        from agentsim.planning.plan.emit import EmitError, check_kinds

        try:
            check_kinds(emit)
        except EmitError as e:
            _fail(str(e))
    hardware_ids = _csv_list(hardware, "--hardware")
    if hardware_ids:
        from agentsim.catalog import CatalogError, CatalogFileError, load_catalog

        try:
            catalog = load_catalog([str(p) for p in data.get("catalog") or []])
            for h in hardware_ids:
                catalog.get_hardware(h)
        except (CatalogError, CatalogFileError) as e:
            _fail(f"--hardware: {e}")
    space = Space(
        hardware=hardware_ids or None,
        tp=_csv_list(tp, "--tp", int) or None,
        pp=_csv_list(pp, "--pp", int) or None,
        parallel=_csv_list(parallel, "--parallel") or None,
        precision=_csv_list(precision, "--precision") or None,
        kv_precision=_csv_list(kv_precision, "--kv-precision") or None,
        max_num_seqs=_csv_list(max_num_seqs, "--max-num-seqs", int) or None,
        preset=_csv_list(preset, "--preset") or None,
        topology=_csv_list(topology, "--topology") or None,
    )
    tty = sys.stderr.isatty()
    t0 = time.perf_counter()

    def line(msg: str) -> None:  # without a terminal: one line per decided count, no round notices
        if not quiet and not msg.startswith("round:"):
            err_console.print(msg, highlight=False, soft_wrap=True)

    try:
        with executor_session(dask, workers) as (ex, n):
            kwargs: dict[str, Any] = {
                "space": space, "overrides": overrides, "attainment": attainment, "max_replicas": max_replicas,
                "replications": replications, "max_replications": max(replications, max_replications),
                "screen": screen, "screen_replications": screen_replications, "prune": not all_,
                "rank_by": rank, "executor": ex, "workers": n, "max_memory_mb": max_memory,
            }  # fmt: skip
            if tty and not quiet and not as_json:
                with err_console.status("planning") as status:

                    def progress(msg: str) -> None:
                        if msg.startswith("round:"):
                            status.update(msg)
                        else:
                            err_console.print(msg, highlight=False, soft_wrap=True)

                    result = plan(data, slos, progress=progress, **kwargs)
            else:
                result = plan(data, slos, progress=line if not as_json else None, **kwargs)
    except KeyboardInterrupt:
        _fail(f"interrupted after {time.perf_counter() - t0:.0f} s: the decisions printed above stand; nothing was "
              "written (a plan is saved only when it finishes); rerun to plan again.", 130)  # fmt: skip
    except (ScenarioError, ValueError) as e:
        _fail(str(e))
    except (ImportError, OSError) as e:
        _fail(str(e), 1)
    if out is not None:
        result.save(out, overwrite=True)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif not quiet:
        print_result(result, label)
        print_warnings({"warnings": result.warnings}, err_console)
        if result.answer is None:
            out_console.print("[bold red]nothing meets the SLOs[/] at 95% confidence among the candidates above")
        out_console.print(
            f"{result.simulations} simulations in {result.wall_s:.1f} s", highlight=False, style="dim"
        )
    if emit:
        try:
            written = emit_files(result, emit, emit_dir, overwrite=overwrite)
        except EmitError as e:
            _fail(str(e))
        for p in written:
            (err_console if as_json else out_console).print(f"config: {p}", highlight=False, soft_wrap=True)
    if out is not None:
        (err_console if as_json else out_console).print(f"results: {out}", highlight=False, soft_wrap=True)
    if result.answer is None:
        raise typer.Exit(3)
