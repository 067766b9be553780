"""``agentsim calibrate`` and ``agentsim fidelity``: the simulator against benchmark measurements.

``calibrate`` fits a pool's perf coefficients to measured points by simulating every condition and writes a
perf YAML; ``fidelity`` simulates measured points (with default or calibrated perf) and reports the error per
metric. The logic lives in :mod:`agentsim.planning.calibrate` and :mod:`agentsim.planning.fidelity`, imported
inside the commands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from agentsim import spec
from agentsim.analysis.accuracy import mape_text
from agentsim.cli.common import _check_out, _csv_list, _fmt, _load
from agentsim.cli.console import err_console, out_console
from agentsim.cli.console import fail as _fail
from agentsim.errors import ScenarioError, did_you_mean


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    """``["hardware=H200", "n_gpus=1"]`` -> a dict; exit 2 on a malformed item."""
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            _fail(f"{what} expects column=value, got {item!r}")
        out[key.strip().lower()] = value.strip()
    return out


PRESETS = ("auto", "scenario", "vllm", "sglang", "trtllm")


def _harness(preset: str, admission: str, kv_free_fraction: float | None, waves: float) -> Any:
    from agentsim.planning.calibrate import HarnessOptions

    if preset not in PRESETS:
        _fail(f"--preset must be one of {', '.join(PRESETS)}, not {preset!r}")
    if admission not in ("auto", "engine", "no-evict"):
        _fail(f"--admission must be auto, engine or no-evict, not {admission!r}")
    if kv_free_fraction is not None and not 0 < kv_free_fraction <= 1:
        _fail("--kv-free-fraction must be in (0, 1]")
    if admission != "auto":
        err_console.print(
            f"warning: --admission is deprecated: engine presets model admission (--admission {admission} is "
            + ("--preset scenario" if admission == "engine" else "the guaranteed-no-evict admission of --preset trtllm")
            + "); applied as an override for now",
            highlight=False,
        )
    if kv_free_fraction is not None:
        err_console.print(
            "warning: --kv-free-fraction is deprecated: engine presets size the KV cache (--preset trtllm takes 0.9 "
            "of the memory the weights leave); applied as an override for now",
            highlight=False,
        )
    return HarnessOptions(
        preset=preset,  # type: ignore[arg-type]
        admission=admission,  # type: ignore[arg-type]
        kv_free_fraction=kv_free_fraction,
        waves=waves,
    )


def _bench_pool(scenario: Path | None, pool: str | None, set_: list[str] | None) -> tuple[Any, list[str]]:
    """The pool named by --scenario/--pool (the first pool without --pool) and the scenario's catalog files."""
    if scenario is None:
        if pool is not None or set_:
            _fail("--pool and --set need --scenario")
        return None, []
    s = _load(scenario, set_, None)
    pools = {p.name: p for p in s.cluster.pools}
    if pool is not None and pool not in pools:
        _fail(f"no pool {pool!r} in {scenario}{did_you_mean(pool, pools)}; pools: {', '.join(pools)}")
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


# The options calibrate and fidelity share, declared once.
PoolOpt = Annotated[str | None, typer.Option(help="pool of --scenario (default: its first)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="override a field of --scenario")]
WhereOpt = Annotated[list[str] | None, typer.Option(help="keep rows with column=value (repeatable)")]
PresetOpt = Annotated[
    str,
    typer.Option(
        help="engine preset: auto (the row's engine label: TensorRT-LLM, vLLM, SGLang; else the pool's), "
        "scenario (the pool's), vllm, sglang, trtllm"
    ),
]
AdmissionOpt = Annotated[str, typer.Option(help="deprecated (use --preset): auto | engine | no-evict")]
KvFreeFractionOpt = Annotated[
    float | None, typer.Option(help="deprecated (use --preset trtllm): KV = this fraction of HBM left")
]
JobsOpt = Annotated[int, typer.Option(help="worker processes")]
CatalogOpt = Annotated[list[Path] | None, typer.Option("--catalog", help="user catalog YAML (repeatable)")]


def calibrate_cmd(
    measurements: Annotated[Path, typer.Argument(help="benchmark results: CSV, vLLM or AIPerf JSON")],
    scenario: Annotated[Path | None, typer.Option(help="scenario whose pool is calibrated")] = None,
    pool: PoolOpt = None,
    set_: SetOpt = None,
    where: WhereOpt = None,
    kind: Annotated[str, typer.Option(help="perf model without --scenario: roofline or linear")] = "roofline",
    params: Annotated[str | None, typer.Option(help="coefficients to fit, comma-separated (default per kind)")] = None,
    metrics: Annotated[str | None, typer.Option(help="output_tok_s,ttft_s,tpot_s to fit (default: all)")] = None,
    preset: PresetOpt = "auto",
    admission: AdmissionOpt = "auto",
    kv_free_fraction: KvFreeFractionOpt = None,
    waves: Annotated[float, typer.Option(help="request lifetimes simulated per condition")] = 3.0,
    max_evals: Annotated[int, typer.Option(help="simulations per point budget of the search")] = 150,
    jobs: JobsOpt = 1,
    catalog_file: CatalogOpt = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="perf YAML to write")] = Path("perf.yaml"),
    overwrite: Annotated[bool, typer.Option(help="replace an existing --out file")] = False,
) -> None:
    """Fit a pool's perf coefficients to benchmark measurements by simulating every condition; write a perf YAML."""
    from agentsim.catalog import CatalogFileError, load_catalog
    from agentsim.planning import calibrate as cal

    ms = _measurements(measurements, where)
    _check_out(out, overwrite=overwrite)
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
            options=_harness(preset, admission, kv_free_fraction, waves),
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
        f"{n} = {result.value(n):.4g} (from {result.value(n, start=True):.4g})" for n in result.params
    )
    out_console.print(f"fitted: {fitted}", highlight=False)
    mapes = ", ".join(
        f"{m} {mape_text(result.mape(m))} (start {mape_text(result.mape(m, start=True))})" for m in result.metrics
    )
    out_console.print(f"MAPE: {mapes}; {result.evaluations} evaluations", highlight=False)
    path = cal.write_perf_yaml(result, out, measurements_file=str(measurements), overwrite=overwrite)
    out_console.print(f"perf: {path}", highlight=False, soft_wrap=True)


def fidelity_cmd(
    points: Annotated[Path, typer.Argument(help="measured points: CSV, vLLM benchmark_serving JSON, AIPerf JSON")],
    perf: Annotated[list[Path] | None, typer.Option(help="perf YAML from `agentsim calibrate` (repeatable)")] = None,
    scenario: Annotated[Path | None, typer.Option(help="simulate this scenario's pool, not the rows' labels")] = None,
    pool: PoolOpt = None,
    set_: SetOpt = None,
    where: WhereOpt = None,
    holdout: Annotated[int, typer.Option(help="calibrate on K rows per group, report the held-out rows")] = 0,
    preset: PresetOpt = "auto",
    admission: AdmissionOpt = "auto",
    kv_free_fraction: KvFreeFractionOpt = None,
    waves: Annotated[float, typer.Option(help="request lifetimes simulated per point")] = 4.0,
    max_evals: Annotated[int, typer.Option(help="with --holdout: simulations budget of each fit")] = 120,
    jobs: JobsOpt = 1,
    catalog_file: CatalogOpt = None,
    rows: Annotated[bool, typer.Option("--rows", help="print every row, not only the groups")] = False,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="write predicted vs measured per row")] = None,
    plot: Annotated[Path | None, typer.Option(help="PNG of predicted vs measured (needs matplotlib)")] = Path(
        "fidelity.png"
    ),
    no_plot: Annotated[bool, typer.Option("--no-plot", help="do not draw the PNG")] = False,
    overwrite: Annotated[bool, typer.Option(help="replace an existing --csv or --plot file")] = False,
) -> None:
    """Simulate measured benchmark points; print predicted vs measured and the MAPE per metric (and a plot)."""
    from agentsim.catalog import CatalogFileError, load_catalog
    from agentsim.planning import calibrate as cal
    from agentsim.planning import fidelity as fid

    ms = _measurements(points, where)
    base, scenario_files = _bench_pool(scenario, pool, set_)
    files = [*scenario_files, *[str(p) for p in catalog_file or []]]
    options = _harness(preset, admission, kv_free_fraction, waves)
    if plot is not None and no_plot:
        plot = None
    for path in (csv_out, plot):
        _check_out(path, overwrite=overwrite)
    try:
        catalog = load_catalog(files)
        overrides = [
            fid.PerfOverride(*cal.load_perf(p), fitted_for=cal.load_perf_fitted_for(p)) for p in perf or []
        ]
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
                    + ", ".join(f"{n} {fit.value(n):.3g}" for n in fit.params)
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
            cells += [mape_text(r.mape(m, role=role, group=group)) for m in metrics]
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
        out_console.print(f"rows: {last.write_csv(csv_out, overwrite=overwrite)}", highlight=False, soft_wrap=True)
    if plot is not None:
        try:
            out_console.print(
                f"plot: {fid.plot_fidelity(last, plot, overwrite=overwrite)}", highlight=False, soft_wrap=True
            )
        except ImportError:
            err_console.print("no plot: matplotlib is not installed (pip install 'agentsim[report]')")
