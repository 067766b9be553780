"""``agentsim sweep`` and ``agentsim plan``: many simulations of one scenario, on local processes or a Dask
cluster. ``sweep`` runs a grid of parameter values with replications (resumable, written to sweep.parquet);
``plan`` searches the fewest replicas of each hardware x tensor-parallel size that meet the SLOs.

The planning modules (and Dask, through them) are imported inside the commands, not when the CLI loads.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentsim import store
from agentsim.cli.common import _csv_list, _fmt, _load
from agentsim.cli.console import err_console, out_console
from agentsim.cli.console import fail as _fail
from agentsim.errors import ScenarioError


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
