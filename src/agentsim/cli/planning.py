"""``agentsim sweep``: many simulations of one scenario, on local processes or a Dask cluster: a grid of
parameter values with replications (resumable, written to sweep.parquet). ``agentsim plan`` is in
:mod:`agentsim.cli.plan`.

The planning modules (and Dask, through them) are imported inside the commands, not when the CLI loads.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentsim import store
from agentsim.cli.common import MAX_MEMORY, _fmt, _load
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

    from agentsim.yamlio import loads

    path, eq, raw = text.partition("=")
    if not eq or not path.strip() or not raw.strip():
        _fail(f"--param {text!r}: expected path.to.field=v1,v2,...")
    try:
        values = [loads(v) if v else v for v in _split_values(raw)]
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
    max_memory: Annotated[float | None, MAX_MEMORY] = None,
) -> None:
    """Run a scenario over a grid of parameter values with replications; resumable; writes sweep.parquet."""
    from agentsim.files import OutputExistsError, OutputPathError
    from agentsim.planning.sweep import check_sweep_dir, executor_session
    from agentsim.planning.sweep import sweep as run_sweep

    base = _load(scenario, set_, seed)
    axes: dict[str, list[Any]] = {}
    for p in param or []:
        path, values = _parse_param(p)
        axes[path] = values
    target = out if out is not None else store.new_run_dir(Path("sweeps"), base.name)
    try:
        check_sweep_dir(target, base, axes)  # before any worker starts
    except (OutputExistsError, OutputPathError) as e:
        _fail(str(e))
    show = not quiet and sys.stderr.isatty()
    state = {"done": 0, "total": 0}
    t0 = time.perf_counter()

    def line(done: int, total: int) -> None:
        """Without a terminal (a log, CI): one line per finished point, none for the same count twice."""
        new = done != state["done"] or not state["total"]
        state.update(done=done, total=total)  # before printing: a Ctrl-C may come as soon as the line is out
        if new:
            err_console.print(f"sweep: {done}/{total} points done, {time.perf_counter() - t0:.0f} s", highlight=False)

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

                    def advance(done: int, total: int) -> None:
                        state.update(done=done, total=total)
                        bar.update(job, completed=done, total=total)

                    table = run_sweep(
                        base, axes, replications=replications, zip=zip_, executor=ex, workers=n, out=target,
                        keep_tables=keep_tables, progress=advance, max_memory_mb=max_memory,
                    )  # fmt: skip
            else:
                table = run_sweep(
                    base, axes, replications=replications, zip=zip_, executor=ex, workers=n, out=target,
                    keep_tables=keep_tables, progress=None if quiet else line, max_memory_mb=max_memory,
                )  # fmt: skip
    except KeyboardInterrupt:
        total = f" of {state['total']}" if state["total"] else ""
        _fail(f"interrupted: {state['done']}{total} points done; every finished run is kept in {target}. "
              "Rerun the same command to resume.", 130)  # fmt: skip
    except (ScenarioError, ValueError, OutputExistsError) as e:
        _fail(str(e))
    except (ImportError, OSError) as e:
        _fail(str(e), 1)
    if not quiet:
        title = f"{base.name}: {table.num_rows} points x {replications} replications (mean ± 95% CI)"
        out_console.print(_sweep_table(table, list(axes), title))
    out_console.print(f"results: {target / 'sweep.parquet'}", highlight=False, soft_wrap=True)
