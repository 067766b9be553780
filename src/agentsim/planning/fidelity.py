"""How accurate is the simulator? Simulate measured benchmark points and compare.

:func:`run_fidelity` takes measurements (:func:`agentsim.planning.calibrate.read_measurements`: a CSV of isl,
osl, load and any of output tokens/s, TTFT, TPOT, or vLLM / AIPerf JSON), reproduces each condition in the
simulator (:func:`agentsim.planning.calibrate.condition_scenario`) and reports predicted against measured with the
mean absolute percentage error (MAPE) per metric, overall and per group of rows (same hardware, model, GPUs,
precision and engine). The deployment of each row comes from a scenario's pool, or from the row's labels
(:func:`agentsim.planning.calibrate.pool_from_labels`); perf files written by ``agentsim calibrate`` replace the
perf model of the rows their ``match`` labels select.

:func:`holdout` answers the calibration question: per group, fit the perf model on ``k`` rows spread over the
group's range of ``isl / osl`` (the two extremes and the middle row: prefill-heavy, decode-heavy and balanced
conditions constrain different coefficients) and report the MAPE on the group's other rows, which the fit never
saw. ``docs/FIDELITY.md`` has the results for TensorRT-LLM's published max-throughput tables.

:func:`plot_fidelity` draws predicted vs measured per metric (needs matplotlib, imported only there).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agentsim import spec
from agentsim.analysis.accuracy import REGIMES, regime_of, tokens_ratio
from agentsim.catalog import Catalog, Efficiency, Hardware, load_catalog
from agentsim.files import atomic_path
from agentsim.planning.calibrate import (
    METRICS,
    Calibration,
    CalibrationError,
    HarnessOptions,
    Measurement,
    PerfAny,
    PointResult,
    calibrate,
    condition_engine,
    filter_measurements,
    for_presets,
    kv_tokens,
    label_preset,
    mape,
    pool_from_labels,
    simulate_points,
    with_perf,
)

__all__ = [
    "GROUP_LABELS",
    "FidelityReport",
    "FidelityRow",
    "HoldoutResult",
    "PerfOverride",
    "group_key",
    "holdout",
    "pick_calibration_rows",
    "plot_fidelity",
    "run_fidelity",
    "with_serving_shares",
]

GROUP_LABELS = ("hardware", "model", "n_gpus", "precision", "engine")
"""The labels that make two rows "the same deployment" for per-group statistics and calibration."""


def group_key(m: Measurement) -> str:
    """``H200 | Llama-3.3-70B-Instruct | 1 | FP8 | TensorRT-LLM v1.0`` (``all`` for unlabeled rows)."""
    parts = [m.labels[k] for k in GROUP_LABELS if m.labels.get(k)]
    return " | ".join(parts) if parts else "all"


@dataclass(frozen=True)
class PerfOverride:
    """A perf spec applied to the rows whose labels hold every ``match`` value (all rows if empty)."""

    perf: PerfAny
    match: Mapping[str, str] = field(default_factory=dict)
    engine: Mapping[str, float] = field(default_factory=dict)  # engine knobs fitted with it (frontend_s)
    # the preset values its fitted kernel time / sequence cost started from (harness.PRESET_KNOBS; absent: unfitted)
    fitted_for: Mapping[str, float] = field(default_factory=dict)

    def applies(self, m: Measurement) -> bool:
        """Whether this override selects ``m``."""
        return bool(filter_measurements([m], self.match)) if self.match else True


@dataclass(frozen=True)
class FidelityRow:
    """One measured point: its deployment, what the simulator predicted, or why it could not be simulated."""

    index: int
    measurement: Measurement
    group: str
    pool: spec.PoolSpec | None
    predicted: Mapping[str, float | None]
    error: str | None = None
    role: Literal["all", "calibration", "held-out"] = "all"

    def error_pct(self, metric: str) -> float | None:
        """``100 * (predicted - measured) / measured``, None when either is missing."""
        return PointResult(self.measurement, self.predicted).error_pct(metric)


@dataclass(frozen=True)
class FidelityReport:
    """Rows of predicted vs measured, and the MAPE per metric overall and per group."""

    rows: tuple[FidelityRow, ...]
    title: str = "fidelity"

    def metrics(self) -> list[str]:
        """The metrics measured in at least one row."""
        return [m for m in METRICS if any(getattr(r.measurement, m) is not None for r in self.rows)]

    def select(self, role: str | None = None, group: str | None = None) -> list[FidelityRow]:
        """Rows with this role (``calibration``, ``held-out``) and group; None: any."""
        return [r for r in self.rows if (role is None or r.role == role) and (group is None or r.group == group)]

    def mape(self, metric: str, role: str | None = None, group: str | None = None) -> float | None:
        """MAPE (%) of ``metric`` over the simulated rows selected by ``role`` and ``group``."""
        rows = [r for r in self.select(role, group) if r.error is None]
        return mape((PointResult(r.measurement, r.predicted) for r in rows), metric)

    def groups(self) -> list[str]:
        """Group keys in order of first appearance."""
        return list(dict.fromkeys(r.group for r in self.rows))

    def failures(self) -> list[FidelityRow]:
        """Rows that could not be simulated (does not fit, unknown model...)."""
        return [r for r in self.rows if r.error is not None]

    def write_csv(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """One line per row: labels, isl, osl, load, role, measured, predicted and error % per metric. Written
        atomically; an existing file is refused unless ``overwrite``."""
        out = Path(path)
        metrics = self.metrics()
        with atomic_path(out, overwrite=overwrite) as tmp, tmp.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(
                [
                    "group",
                    "isl",
                    "osl",
                    "load",
                    "role",
                    *[f"{m}_{k}" for m in metrics for k in ("meas", "pred", "err_pct")],
                    "error",
                ]
            )
            for r in self.rows:
                cells: list[Any] = [r.group, r.measurement.isl, r.measurement.osl, r.measurement.load, r.role]
                for m in metrics:
                    e = r.error_pct(m)
                    cells += [getattr(r.measurement, m), r.predicted.get(m), None if e is None else round(e, 2)]
                w.writerow([*cells, r.error or ""])
        return out

    def count(self, metric: str, role: str | None = None) -> int:
        """Rows (of ``role``) with both a measured and a predicted ``metric``: what :meth:`mape` averages over."""
        return sum(1 for r in self.select(role) if r.error is None and r.error_pct(metric) is not None)

    def regime(self, name: str) -> FidelityReport:
        """The report of the rows of one regime (:func:`agentsim.analysis.accuracy.regime_of` of each row's prompt
        and output lengths: no prefix is cached in a benchmark row)."""
        rows = tuple(r for r in self.rows if regime_of(tokens_ratio(r.measurement.isl, r.measurement.osl)) == name)
        return FidelityReport(rows, f"{self.title} {name}")

    def measured(self, catalog: Catalog, role: str | None = None) -> dict[str, Any]:
        """What the simulated rows (of ``role``) ran and how far the predictions fell from them, as a class's
        ``measured`` block of ``catalog/accuracy.yaml`` (:class:`agentsim.analysis.accuracy.Measured`): the
        rows, the distinct (kind of model from ``catalog``, hardware, precision) they ran, the catalog ids of their
        models and the engine presets the rows name (sorted), and per metric the MAPE (%, one decimal) and the rows
        that measured it, over all rows and per regime (:meth:`regime`; a regime without rows left out)."""
        rows = [r for r in self.select(role) if r.error is None and r.pool is not None]
        deployments = [r.pool.deployment for r in rows if r.pool is not None]  # every one: the filter is mypy's
        kinds = ["moe" if catalog.get_model(d.model).is_moe else "dense" for d in deployments]
        regimes = {name: self.regime(name)._figures(role) for name in REGIMES}
        return {
            **self._figures(role),
            "deployments": sorted({(k, d.hardware.lower(), str(d.precision)) for k, d in zip(kinds, deployments,
                                                                                           strict=True)}),
            "models": sorted({d.model.lower() for d in deployments}),
            # the preset each row ran: its engine label's (the harness's ``preset: auto``), else the pool's
            "engines": sorted({str(label_preset(r.measurement.labels) or d.engine.preset)
                               for r, d in zip(rows, deployments, strict=True)}),
            "regimes": {k: f for k, f in regimes.items() if f["rows"]},
        }

    def _figures(self, role: str | None = None) -> dict[str, Any]:
        """The simulated rows (of ``role``) and per metric the MAPE and the mean signed error (%, one decimal) and the
        rows that measured it, as :class:`agentsim.analysis.accuracy.Figures`."""
        rows = sum(1 for r in self.select(role) if r.error is None and r.pool is not None)
        mape_pct = {m: None if (v := self.mape(m, role=role)) is None else round(v, 1) for m in METRICS}
        bias_pct = {m: None if (v := self.bias(m, role=role)) is None else round(v, 1) for m in METRICS}
        n = {m: self.count(m, role=role) for m in METRICS}
        return {"rows": rows, "mape_pct": mape_pct, "n": n, "bias_pct": bias_pct}

    def bias(self, metric: str, role: str | None = None) -> float | None:
        """Mean signed error (%) of ``metric`` over the simulated rows (of ``role``): above 0, the model runs high."""
        errors = [e for r in self.select(role) if r.error is None and (e := r.error_pct(metric)) is not None]
        return sum(errors) / len(errors) if errors else None


def _resolve_pools(
    measurements: Sequence[Measurement],
    catalog: Catalog,
    base_pool: spec.PoolSpec | None,
    overrides: Sequence[PerfOverride],
    engine: spec.EngineSpec | None,
    options: HarnessOptions,
) -> list[spec.PoolSpec | str]:
    """Per row: the pool to simulate (base pool or from labels, last matching override's perf), or the error."""
    from agentsim.perf.memory import DoesNotFitError

    out: list[spec.PoolSpec | str] = []
    for m in measurements:
        try:
            pool = base_pool if base_pool is not None else pool_from_labels(m, catalog, engine=engine)
            fitted_for: Mapping[str, float] = {}
            for o in overrides:
                if o.applies(m):
                    pool, fitted_for = with_perf(pool, o.perf, o.engine), o.fitted_for
            row_engine = condition_engine(pool, m, options, catalog)
            pool = for_presets(pool, fitted_for, row_engine, catalog)  # a fitted value is for its preset's rows
            dep = pool.deployment.model_copy(update={"engine": row_engine})
            capacity = kv_tokens(pool.model_copy(update={"deployment": dep}), catalog)  # the deployment fits
            # one request must fit one attention rank's cache, or the simulation cannot serve the row at all
            per_rank, request = capacity // dep.attention_ranks, math.ceil(m.isl + m.osl)
            if per_rank < request:
                raise CalibrationError(
                    f"the modelled KV cache ({per_rank:,} tokens) holds less than one request of this row "
                    f"({request:,} tokens), which the engine served: the memory model under-counts this "
                    "deployment's cache"
                )
            out.append(pool)
        except (CalibrationError, DoesNotFitError, KeyError, ValueError) as e:
            out.append(str(e.args[0]) if isinstance(e, KeyError) and e.args else str(e))
    return out


def run_fidelity(
    measurements: Sequence[Measurement],
    *,
    pool: spec.PoolSpec | None = None,
    overrides: Sequence[PerfOverride] = (),
    engine: spec.EngineSpec | None = None,
    catalog: Catalog | None = None,
    options: HarnessOptions | None = None,
    jobs: int = 1,
    catalog_files: Sequence[str] = (),
    title: str = "fidelity",
) -> FidelityReport:
    """Simulate every measurement (module docstring) and collect predicted vs measured. Rows whose deployment
    cannot run (does not fit, unknown ids) are kept with the reason in :attr:`FidelityRow.error`."""
    catalog = catalog if catalog is not None else load_catalog(list(catalog_files))
    pools = _resolve_pools(measurements, catalog, pool, overrides, engine, options or HarnessOptions())
    runnable = [(i, p) for i, p in enumerate(pools) if isinstance(p, spec.PoolSpec)]
    preds = simulate_points(
        [p for _, p in runnable],
        [measurements[i] for i, _ in runnable],
        catalog,
        options,
        jobs=jobs,
    )
    by_index = {i: pred for (i, _), pred in zip(runnable, preds, strict=True)}
    rows = []
    for i, (m, p) in enumerate(zip(measurements, pools, strict=True)):
        if isinstance(p, spec.PoolSpec):
            rows.append(FidelityRow(i, m, group_key(m), p, by_index[i]))
        else:
            rows.append(FidelityRow(i, m, group_key(m), None, {}, error=p))
    return FidelityReport(tuple(rows), title)


def with_serving_shares(catalog: Catalog, hardware_ids: Sequence[str], gemm: float, hbm: float) -> Catalog:
    """``catalog`` with the serving shares of ``hardware_ids`` set to ``gemm`` and ``hbm`` (``Efficiency.
    serving_gemm_share``, ``serving_hbm_share``; :func:`agentsim.perf.efficiency.serving_shares`), each entry
    validated as a catalog file's would be (a share outside (0, 1] is refused, naming the field): what
    ``experiments/fidelity/fit_serving_shares.py`` searches over."""
    hardware: dict[str, Hardware] = {}
    for hw_id in hardware_ids:
        hw = catalog.get_hardware(hw_id)
        if hw.efficiency is None:
            raise ValueError(f"hardware {hw_id!r} has no measured efficiency for serving shares to scale")
        shares = {"serving_gemm_share": gemm, "serving_hbm_share": hbm}
        eff = Efficiency.model_validate(hw.efficiency.model_dump() | shares)
        hardware[hw_id.lower()] = hw.model_copy(update={"efficiency": eff})
    return catalog.merged(Catalog(hardware=hardware))


def pick_calibration_rows(measurements: Sequence[Measurement], k: int = 3) -> list[int]:
    """Indices of ``k`` rows spread over the range of ``log(isl / osl)``: the most decode-heavy, the most
    prefill-heavy, and the rest evenly between (ties keep file order)."""
    if k <= 0 or not measurements:
        return []
    order = sorted(range(len(measurements)), key=lambda i: math.log(measurements[i].isl / measurements[i].osl))
    if k >= len(order):
        return sorted(order)
    if k == 1:
        return [order[len(order) // 2]]
    picks = {order[round(j * (len(order) - 1) / (k - 1))] for j in range(k)}
    return sorted(picks)


@dataclass(frozen=True)
class HoldoutResult:
    """Default-model fidelity on every row, calibrated fidelity with calibration and held-out roles, and the fit of
    each group."""

    default: FidelityReport
    calibrated: FidelityReport
    fits: Mapping[str, Calibration]


def holdout(
    measurements: Sequence[Measurement],
    *,
    k: int = 3,
    pool: spec.PoolSpec | None = None,
    engine: spec.EngineSpec | None = None,
    catalog: Catalog | None = None,
    options: HarnessOptions | None = None,
    params: Sequence[str] | None = None,
    max_evals: int = 120,
    jobs: int = 1,
    catalog_files: Sequence[str] = (),
    progress: Any = None,
) -> HoldoutResult:
    """Per group (:func:`group_key`): calibrate on ``k`` rows (:func:`pick_calibration_rows`), then simulate every
    row of the group with the fitted perf; rows are marked ``calibration`` or ``held-out``. Also returns the
    default model's report on the same rows. Groups whose deployment cannot run are reported as failures."""
    catalog = catalog if catalog is not None else load_catalog(list(catalog_files))
    default = run_fidelity(
        measurements,
        pool=pool,
        engine=engine,
        catalog=catalog,
        options=options,
        jobs=jobs,
        title="default",
    )
    rows: list[FidelityRow] = []
    fits: dict[str, Calibration] = {}
    for group in default.groups():
        members = [r for r in default.rows if r.group == group]
        runnable = [r for r in members if r.pool is not None]
        if not runnable:
            rows.extend(members)
            continue
        group_pool = runnable[0].pool
        assert group_pool is not None
        ms = [r.measurement for r in runnable]
        chosen = set(pick_calibration_rows(ms, k))
        fit = calibrate(
            [ms[i] for i in sorted(chosen)],
            group_pool,
            catalog=catalog,
            params=params,
            options=options,
            max_evals=max_evals,
            jobs=jobs,
        )
        fits[group] = fit
        # a fitted kernel time or per-sequence cost is for rows whose preset gave the calibration rows' value
        opts = options or HarnessOptions()
        pools = [for_presets(fit.pool, fit.presets, condition_engine(fit.pool, m, opts, catalog), catalog) for m in ms]
        preds = simulate_points(pools, ms, catalog, options, jobs=jobs)
        for j, (r, pred) in enumerate(zip(runnable, preds, strict=True)):
            role: Literal["calibration", "held-out"] = "calibration" if j in chosen else "held-out"
            rows.append(FidelityRow(r.index, r.measurement, group, fit.pool, pred, role=role))
        rows.extend(r for r in members if r.pool is None)
        if progress is not None:
            progress(group, fit)
    rows.sort(key=lambda r: r.index)
    return HoldoutResult(default, FidelityReport(tuple(rows), "calibrated"), fits)


def plot_fidelity(report: FidelityReport, path: str | Path, *, overwrite: bool = False) -> Path:
    """Predicted vs measured, one panel per metric, log-log with the y = x line and +-10% / +-30% bands;
    held-out rows filled, calibration rows hollow, as a PNG written atomically (an existing file is refused
    unless ``overwrite``). Needs matplotlib (raises ImportError without it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = report.metrics()
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(5 * max(1, len(metrics)), 4.6), squeeze=False)
    units = {"output_tok_s": "output tokens/s", "ttft_s": "TTFT (s)", "tpot_s": "TPOT (s)"}
    for ax, metric in zip(axes[0], metrics, strict=False):
        pairs = [
            (getattr(r.measurement, metric), r.predicted.get(metric), r.role)
            for r in report.rows
            if r.error is None and getattr(r.measurement, metric) and r.predicted.get(metric)
        ]
        if not pairs:
            continue
        lo = min(min(a, b) for a, b, _ in pairs) * 0.8
        hi = max(max(a, b) for a, b, _ in pairs) * 1.25
        ax.plot([lo, hi], [lo, hi], color="black", lw=1)
        for band, style in ((0.1, ":"), (0.3, "--")):
            ax.plot([lo, hi], [lo * (1 + band), hi * (1 + band)], color="gray", lw=0.8, ls=style)
            ax.plot([lo, hi], [lo * (1 - band), hi * (1 - band)], color="gray", lw=0.8, ls=style)
        for role, face in (("all", "C0"), ("held-out", "C0"), ("calibration", "none")):
            xs = [a for a, _, r in pairs if r == role]
            ys = [b for _, b, r in pairs if r == role]
            if xs:
                ax.scatter(xs, ys, s=18, facecolors=face, edgecolors="C0", label=role if role != "all" else None)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {units.get(metric, metric)}")
        ax.set_ylabel(f"simulated {units.get(metric, metric)}")
        m_all = report.mape(metric, role="held-out") if report.select("held-out") else report.mape(metric)
        ax.set_title(f"{metric}: MAPE {m_all:.1f}%" if m_all is not None else metric)
        if report.select("held-out"):
            ax.legend(loc="upper left", fontsize=8)
    fig.suptitle(report.title)
    fig.tight_layout()
    out = Path(path)
    try:
        with atomic_path(out, overwrite=overwrite) as tmp:
            fig.savefig(tmp, dpi=120, format="png")
    finally:
        plt.close(fig)
    return out
