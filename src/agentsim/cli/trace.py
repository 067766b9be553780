"""``agentsim trace ...``: import, inspect, generate, fit and export workload traces.

Mounted on the main app by :mod:`agentsim.cli` (``app.add_typer(trace_app, name="trace")``). Every command
writes its output atomically (a temporary sibling renamed into place), refuses to replace an existing file
unless ``--overwrite``, and exits 2 with a one-line reason (file and line for bad input) and no traceback
when its input or arguments are bad.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from agentsim.cli.common import _check_out
from agentsim.cli.console import err_console, out_console
from agentsim.cli.console import fail as _fail
from agentsim.cli.examples import epilog
from agentsim.errors import did_you_mean
from agentsim.spec import AgentProfile, FixedProfile, GammaArrivals, Poisson
from agentsim.traces.schema import TraceError

trace_app = typer.Typer(
    name="trace",
    help="Workload traces: import real ones, inspect, generate synthetic ones, fit profiles, export.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

_out = out_console
_err = err_console


def _num(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if float(x).is_integer():
        return f"{int(x)}"
    return f"{x:.4g}"


_OUT = Annotated[Path, typer.Option("--out", "-o", help="output file")]
_OVERWRITE = Annotated[bool, typer.Option(help="replace an existing output file")]


@trace_app.command("import", epilog=epilog("trace import"))
def import_cmd(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="mooncake | azure | burstgpt | agent-sessions | aiperf")],
    src: Annotated[Path, typer.Argument(metavar="IN", help="source file (.gz accepted for JSONL)")],
    out: _OUT,
    skip_bad: Annotated[bool, typer.Option("--skip-bad", help="skip malformed lines and count them")] = False,
    workload: Annotated[str | None, typer.Option(help="workload label for every task")] = None,
    block_size: Annotated[int | None, typer.Option(help="tokens per hash block of the source (default 512)")] = None,
    overwrite: _OVERWRITE = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the import report as JSON")] = False,
) -> None:
    """Convert a trace from a public format into agentsim's canonical Parquet trace."""
    from agentsim.traces.importers import FORMATS, import_trace

    if fmt not in FORMATS:
        _fail(f"unknown format {fmt!r}{did_you_mean(fmt, FORMATS)}; known: {', '.join(FORMATS)}")
    _check_out(out, overwrite=overwrite)
    try:
        r = import_trace(
            fmt, src, out, skip_bad=skip_bad, overwrite=overwrite, workload=workload, block_size_tokens=block_size
        )
    except TraceError as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(r.as_dict(), indent=2))
        return
    msg = f"imported {r.calls:,} calls in {r.tasks:,} tasks from {src} -> {out} ({r.seconds:.2f} s)"
    _out.print(msg, highlight=False, soft_wrap=True)
    if r.skipped_bad:
        listed = ", ".join(str(n) for n in r.bad_lines)
        more = ", ..." if r.skipped_bad > len(r.bad_lines) else ""
        _out.print(f"skipped {r.skipped_bad:,} bad line(s): {listed}{more}", highlight=False, soft_wrap=True)
    if r.dropped_failed:
        _out.print(f"dropped {r.dropped_failed:,} failed request(s) (0 output tokens)", highlight=False)
    if r.sorted_in_memory:
        _out.print("the input was not in start order; it was sorted in memory", highlight=False)


@trace_app.command("stats", epilog=epilog("trace stats"))
def stats_cmd(
    path: Annotated[Path, typer.Argument(help="canonical trace (.parquet)")],
    as_json: Annotated[bool, typer.Option("--json", help="print the statistics as JSON")] = False,
) -> None:
    """Rows, span, arrival rate and burstiness, token percentiles, steps per task, prefix reuse."""
    from agentsim.traces.io import read_trace_meta
    from agentsim.traces.stats import stats_dict, stats_json, unit_of

    try:
        meta = read_trace_meta(path)
        d = stats_dict(path)
    except TraceError as e:
        _fail(str(e))
    if as_json:
        typer.echo(json.dumps(stats_json(d), indent=2))
        return
    t = Table(title=f"{path} ({meta.source or 'unknown source'}, blocks of {meta.block_size_tokens} tokens)")
    t.add_column("statistic")
    t.add_column("value", justify="right")
    t.add_column("unit")
    for k, v in d.items():
        t.add_row(k, f"{100 * v:.2f}%" if unit_of(k) == "fraction" and not math.isnan(v) else _num(v), unit_of(k))
    _out.print(t)


def _resolve_profile(
    profile: str,
) -> tuple[AgentProfile | FixedProfile, Poisson | GammaArrivals | None, str]:
    from agentsim.traces.fit import load_profile_file
    from agentsim.workload.profiles import builtin_profiles

    known = builtin_profiles()
    if profile in known:
        return known[profile], None, profile
    p = Path(profile)
    if p.is_file():
        try:
            prof, arr = load_profile_file(p)
        except TraceError as e:
            _fail(str(e))
        return prof, arr, p.stem
    _fail(
        f"{profile!r} is neither a built-in profile{did_you_mean(profile, known)} ({', '.join(sorted(known))}) "
        "nor a profile file"
    )


@trace_app.command("generate", epilog=epilog("trace generate"))
def generate_cmd(
    profile: Annotated[str, typer.Argument(help="built-in profile name, or a YAML file from `trace fit`")],
    out: _OUT,
    tasks: Annotated[int, typer.Option(help="number of tasks", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="random seed", min=0)] = 0,
    rate: Annotated[float | None, typer.Option(help="task arrival rate per second (default: the file's)")] = None,
    cv: Annotated[
        float | None, typer.Option(help="inter-arrival CV: gamma arrivals (default with --rate: Poisson)")
    ] = None,
    workload: Annotated[str | None, typer.Option(help="workload label (default: the profile's name)")] = None,
    overwrite: _OVERWRITE = False,
) -> None:
    """Generate a synthetic trace from a profile and an arrival process, drawn from the same named random
    streams as a simulation of that workload with that seed."""
    from agentsim.traces.generate import generate_trace

    _check_out(out, overwrite=overwrite)
    prof, arrivals, name = _resolve_profile(profile)
    try:
        if rate is not None:
            arrivals = Poisson(rate_per_s=rate) if cv is None else GammaArrivals(rate_per_s=rate, cv=cv)
        elif cv is not None and arrivals is not None:
            arrivals = GammaArrivals(rate_per_s=arrivals.rate_per_s, cv=cv)
    except ValueError as e:
        _fail(f"bad arrivals: {e}")
    if arrivals is None:
        _fail(f"{profile!r} has no arrival process; give --rate (and optionally --cv)")
    label = workload or name
    try:
        calls = generate_trace(
            out, prof, tasks, arrivals=arrivals, seed=seed, workload=label, source=f"generated:{profile}:seed={seed}",
            overwrite=overwrite,
        )  # fmt: skip
    except TraceError as e:
        _fail(str(e))
    _out.print(f"generated {tasks:,} tasks ({calls:,} calls) of {label} -> {out}", highlight=False, soft_wrap=True)


@trace_app.command("fit", epilog=epilog("trace fit"))
def fit_cmd(
    path: Annotated[Path, typer.Argument(help="canonical trace (.parquet)")],
    out: _OUT,
    points: Annotated[int, typer.Option(help="support points of each empirical distribution", min=2)] = 200,
    overwrite: _OVERWRITE = False,
) -> None:
    """Fit a profile and gamma arrivals that generate look-alikes of a trace; writes a YAML profile file."""
    from agentsim.traces.fit import fit_profile

    _check_out(out, overwrite=overwrite)
    try:
        fitted = fit_profile(path, points=points)
        fitted.write(out, overwrite=overwrite)
    except TraceError as e:
        _fail(str(e))
    a = fitted.arrivals
    _out.print(
        f"fitted {'an' if fitted.profile.kind == 'agent' else 'a'} {fitted.profile.kind} profile, arrivals gamma "
        f"rate {a.rate_per_s:.4g}/s cv {a.cv:.3g} -> {out}",
        highlight=False,
        soft_wrap=True,
    )
    _out.print(f"why {fitted.profile.kind}: {fitted.reason}", highlight=False, soft_wrap=True)


@trace_app.command("export", epilog=epilog("trace export"))
def export_cmd(
    fmt: Annotated[
        str, typer.Argument(metavar="FORMAT", help="mooncake-agentic (Dynamo v2) | mooncake-agentic-v1 | mooncake")
    ],
    src: Annotated[Path, typer.Argument(metavar="IN", help="canonical trace (.parquet)")],
    out: _OUT,
    block_size: Annotated[int, typer.Option(help="tokens per hash block in the output", min=1)] = 512,
    open_loop: Annotated[
        bool,
        typer.Option(
            "--open-loop",
            help="mooncake: a timestamp on every row (instant answers assumed) instead of sessions and delays",
        ),
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="mooncake-agentic: model named on every row (default: the workload label)")
    ] = None,
    overwrite: _OVERWRITE = False,
) -> None:
    """Write a trace as JSONL for other tools: Dynamo's agentic Mooncake (v2, or the older v1 rows), or plain
    Mooncake with sessions and delays (AIPerf's mooncake_trace)."""
    from agentsim.traces.export import EXPORT_FORMATS, export_trace

    if fmt not in EXPORT_FORMATS:
        _fail(f"unknown export format {fmt!r}{did_you_mean(fmt, EXPORT_FORMATS)}; known: {', '.join(EXPORT_FORMATS)}")
    _check_out(out, overwrite=overwrite)
    try:
        r = export_trace(
            fmt, src, out, block_size_tokens=block_size, overwrite=overwrite, open_loop=open_loop, model=model
        )
    except TraceError as e:
        _fail(str(e))
    _out.print(f"exported {r.rows:,} calls of {r.tasks:,} tasks as {fmt} -> {out}", highlight=False, soft_wrap=True)
