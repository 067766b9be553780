"""Fit a perf model's coefficients to benchmark measurements *through the simulator*.

A serving benchmark reports what a client saw (:mod:`agentsim.planning.calibrate.measurements`): output
tokens/s, mean TTFT and TPOT at some input and output length and load. Those figures mix the engine's step times
with batching and queueing, so fitting step-time coefficients to them directly (e.g. ``TPOT = step time``) is
biased. Instead, :func:`calibrate` reproduces every measured condition as a small scenario
(:mod:`agentsim.planning.calibrate.harness`), simulates it with candidate coefficients, and minimizes the error
between simulated and measured metrics with a derivative-free Nelder-Mead search (:func:`nelder_mead`, scipy's
simplex with one restart). The result (:class:`Calibration`) is a perf spec with the fitted values plus the
residual of every point.

**The objective** is the mean over points and measured metrics of ``log(predicted / measured)**2``: symmetric in
over- and under-prediction, scale-free across metrics. Coefficients are searched in transformed coordinates
(:class:`Param`: logit for fractions in (0, 1], log for positive seconds), so every candidate is valid. Each
condition's horizon and admission cap are planned once from the starting coefficients, so the objective is a
deterministic function of the coefficients, and so is the fit.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from agentsim import spec
from agentsim.catalog import Catalog, load_catalog
from agentsim.planning.calibrate.harness import (
    HarnessOptions,
    Plan,
    Runner,
    plan_condition,
    preset_kernel_latency,
    replace_model,
    scenario_for,
    with_perf,
)
from agentsim.planning.calibrate.measurements import METRICS, CalibrationError, Measurement

__all__ = [
    "LINEAR_PARAMS",
    "MISSING_PENALTY",
    "ROOFLINE_PARAMS",
    "Calibration",
    "Param",
    "PointResult",
    "calibrate",
    "default_params",
    "linear_seed",
    "mape",
    "nelder_mead",
]

MISSING_PENALTY = 4.0
"""Objective contribution of a metric the simulation could not produce (e.g. no call finished in the window):
as bad as a factor e**2 error."""


def nelder_mead(
    f: Callable[[np.ndarray], float],
    x0: Sequence[float],
    *,
    step: float | Sequence[float] = 0.3,
    max_evals: int = 200,
    xtol: float = 1e-4,
    ftol: float = 1e-10,
    restarts: int = 1,
) -> tuple[np.ndarray, float, int]:
    """Minimize ``f`` from ``x0`` with the Nelder-Mead simplex method (:func:`scipy.optimize.minimize`,
    ``method="Nelder-Mead"``: reflection 1, expansion 2, contraction 1/2, shrink 1/2) on the simplex ``x0``,
    ``x0 + step_i e_i``; then ``restarts`` times from the best point with a fresh simplex of half the previous
    steps (Nelder-Mead can stall on a collapsed simplex; a restart is the standard remedy). Each run stops when
    its simplex is within ``xtol`` of its best vertex in every coordinate and its values within ``ftol``, or when
    the ``max_evals`` evaluations shared by all runs are spent. A non-finite value counts as ``inf``. Every
    evaluation is a simulation, so none is wasted: a restart's first vertex (the best point so far) is not
    evaluated again, and a point better than scipy's result (one evaluated just before the budget ran out, which
    scipy drops) is kept. Returns ``(x_best, f_best, evaluations)``; deterministic for a deterministic ``f``."""
    from scipy.optimize import minimize

    x0_arr = np.asarray(x0, dtype=np.float64)
    n = x0_arr.size
    steps = np.broadcast_to(np.asarray(step, dtype=np.float64), (n,)).copy()
    evals = 0
    seen_x, seen_f = x0_arr, math.inf  # the best point evaluated
    known: tuple[bytes, float] | None = None  # the restart point and its value

    def fx(x: np.ndarray) -> float:
        nonlocal evals, seen_x, seen_f
        if known is not None and x.tobytes() == known[0]:
            return known[1]
        evals += 1
        value = float(f(x))
        value = value if math.isfinite(value) else math.inf
        if value < seen_f:
            seen_x, seen_f = x.copy(), value
        return value

    best_x, best_f = x0_arr, math.inf
    for run in range(restarts + 1):
        if run > 0:
            known = (best_x.tobytes(), best_f)
        simplex = np.vstack([best_x, best_x + np.diag(steps)])
        budget = max_evals - evals + (1 if known is not None else 0)
        res = minimize(
            fx,
            best_x,
            method="Nelder-Mead",
            options={"initial_simplex": simplex, "xatol": xtol, "fatol": ftol, "maxfev": budget},
        )
        if float(res.fun) <= best_f:
            best_x, best_f = np.asarray(res.x, dtype=np.float64), float(res.fun)
        if seen_f < best_f:
            best_x, best_f = seen_x, seen_f
        if evals >= max_evals:
            break
        steps = steps * 0.5
    return best_x, best_f, evals


@dataclasses.dataclass(frozen=True)
class Param:
    """A coefficient of a perf spec searched over: its field name and transform (``logit``: a fraction in
    (0, 1]; ``log``: a positive number)."""

    name: str
    transform: Literal["logit", "log"]
    upper: float = math.inf  # the field's own bound (a log-scale search would otherwise leave it)

    def to_u(self, value: float) -> float:
        """Search coordinate of ``value``."""
        if self.transform == "logit":
            v = min(max(value, 1e-6), 1.0 - 1e-9)
            return math.log(v / (1.0 - v))
        return math.log(max(value, 1e-12))

    def from_u(self, u: float) -> float:
        """Value of search coordinate ``u``."""
        if self.transform == "logit":
            return 1.0 / (1.0 + math.exp(-u))
        return min(math.exp(min(u, 50.0)), self.upper)


ROOFLINE_PARAMS = {
    "mfu": Param("mfu", "logit"),
    "mbu": Param("mbu", "logit"),
    "overhead_s": Param("overhead_s", "log"),
    "overhead_s_per_seq": Param("overhead_s_per_seq", "log"),
    "comm_efficiency": Param("comm_efficiency", "logit"),
    "collective_latency_s": Param("collective_latency_s", "log"),
    "kernel_latency_s": Param("kernel_latency_s", "log"),
}
ENGINE_PARAMS = {"frontend_s": Param("frontend_s", "log", upper=60.0)}  # EngineSpec.frontend_s: at most 60 s
"""Engine knobs a calibration can fit beside the perf model's coefficients: ``frontend_s``, the server's time per
request outside the engine's steps, which the measured TTFT carries and a step model cannot (left to the step
coefficients, a TTFT tens of milliseconds above the prefill drags the per-step overhead up and TPOT with it)."""

FRONTEND_START_S = 0.02
"""Where the log-scale search for ``frontend_s`` starts when the engine has none: 20 ms, the order of the front
ends' share of gpustack's single-request TTFT (docs/FIDELITY.md)."""

SEQLESS_START_S = 1e-5
"""Where the log-scale search for ``overhead_s_per_seq`` starts when the rows' preset charges none (0: TensorRT-LLM
measured by ``trtllm-bench``): 10 us, below every preset's cost."""

FLOORLESS_START_S = 1e-5
"""Where the log-scale search for ``kernel_latency_s`` starts when the engine's is 0 (no kernel floor): 10 us,
the vLLM and SGLang presets' value."""

LINEAR_PARAMS = {
    "alpha_s": Param("alpha_s", "log"),
    "beta_s_per_prefill_token": Param("beta_s_per_prefill_token", "log"),
    "gamma_s_per_context_token": Param("gamma_s_per_context_token", "log"),
    "delta_s_per_seq": Param("delta_s_per_seq", "log"),
}


def default_params(perf: Any, metrics: Sequence[str] = ()) -> list[str]:
    """The coefficients fitted by default: roofline ``mfu, mbu, overhead_s``; linear all four; and the engine's
    ``frontend_s`` when TTFT is among the fitted ``metrics``. :func:`calibrate` adds the roofline's
    ``kernel_latency_s`` when every calibration row's engine launches kernels the same way (all with CUDA graphs
    or all eager) and the kernel floor binds on some row at up to :data:`KERNEL_PROBE` times the preset's kernel
    time: where few sequences decode, the floor sets the step time, and no other coefficient moves it. It adds
    ``overhead_s_per_seq`` when every row's preset charges one per-sequence cost, doubling it moves some row's
    prediction by more than :data:`SEQ_PROBE_MOVE`, and the rows ran different numbers of sequences
    (:data:`SEQ_CONTRAST`): only then do they tell it from the per-step ``overhead_s``."""
    frontend = ["frontend_s"] if "ttft_s" in metrics else []
    if isinstance(perf, spec.RooflinePerf):
        return ["mfu", "mbu", "overhead_s", *frontend]
    if isinstance(perf, spec.LinearPerf):
        return [*LINEAR_PARAMS, *frontend]
    raise CalibrationError(f"calibration fits roofline or linear perf models, not {getattr(perf, 'kind', perf)!r}")


def linear_seed(pool: spec.PoolSpec, catalog: Catalog) -> spec.LinearPerf:
    """A linear model fitted (least squares, relative) to the default roofline of ``pool``'s deployment over
    typical steps: a starting point for linear calibration when no coefficients are known."""
    from agentsim.perf.roofline import RooflinePerfModel

    dep = pool.deployment
    roof = RooflinePerfModel(catalog.get_hardware(dep.hardware), catalog.get_model(dep.model), dep)
    rows, times = [], []
    for p in (0.0, 256.0, 2048.0, 8192.0):
        for d in (0.0, 1.0, 16.0, 128.0):
            for ctx in (0.0, 8e3, 1e5, 1e6):
                if p + d > 0:
                    rows.append([1.0, p, ctx, d])
                    times.append(roof.step_time(p, d, ctx))
    a = np.asarray(rows)
    t = np.asarray(times)
    coef, *_ = np.linalg.lstsq(a / t[:, None], np.ones_like(t), rcond=None)
    coef = np.maximum(coef, [1e-4, 1e-7, 1e-10, 1e-6])
    return spec.LinearPerf(
        alpha_s=float(coef[0]),
        beta_s_per_prefill_token=float(coef[1]),
        gamma_s_per_context_token=float(coef[2]),
        delta_s_per_seq=float(coef[3]),
    )


@dataclasses.dataclass(frozen=True)
class PointResult:
    """One measurement with what the simulator predicted for it."""

    measurement: Measurement
    predicted: Mapping[str, float | None]

    def error_pct(self, metric: str) -> float | None:
        """``100 * (predicted - measured) / measured``; None when either is missing."""
        meas: float | None = getattr(self.measurement, metric)
        pred = self.predicted.get(metric)
        if meas is None or pred is None or meas == 0:
            return None
        return 100.0 * (pred - meas) / meas


def mape(points: Iterable[PointResult], metric: str) -> float | None:
    """Mean absolute percentage error of ``metric`` over the points that have it (None if none)."""
    errors = [abs(e) for p in points if (e := p.error_pct(metric)) is not None]
    return sum(errors) / len(errors) if errors else None


@dataclasses.dataclass(frozen=True)
class Calibration:
    """A fitted perf spec, where it started, and how well it reproduces each measurement."""

    perf: spec.RooflinePerf | spec.LinearPerf
    start: spec.RooflinePerf | spec.LinearPerf
    pool: spec.PoolSpec
    params: tuple[str, ...]
    points: tuple[PointResult, ...]
    start_points: tuple[PointResult, ...]
    objective: float
    evaluations: int
    metrics: tuple[str, ...]
    engine: Mapping[str, float] = dataclasses.field(default_factory=dict)  # fitted engine knobs (ENGINE_PARAMS)
    engine_start: Mapping[str, float] = dataclasses.field(default_factory=dict)
    # for each fitted kernel time / per-sequence cost, the preset value all calibration rows had (harness.PRESET_KNOBS)
    presets: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def value(self, name: str, *, start: bool = False) -> float:
        """The fitted (or starting) value of parameter ``name``, a perf coefficient or an engine knob."""
        engine = self.engine_start if start else self.engine
        if name in engine:
            return engine[name]
        return float(getattr(self.start if start else self.perf, name))

    def mape(self, metric: str, *, start: bool = False) -> float | None:
        """MAPE of ``metric`` with the fitted (or the starting) coefficients."""
        return mape(self.start_points if start else self.points, metric)


def _kernel_latencies(pool: spec.PoolSpec, plans: Sequence[Plan], catalog: Catalog) -> list[float]:
    """The distinct preset kernel times (:func:`preset_kernel_latency`: the eager one where a row's engine runs
    without CUDA graphs) of the engines the calibration rows run on ``pool``."""
    return sorted({preset_kernel_latency(pool, p.engine, catalog) for p in plans})


KERNEL_PROBE = 2.0
"""The default fit probes the kernel floor with the preset's kernel time times this: ``kernel_latency_s`` is
fitted when some calibration row's prediction moves (:func:`_moves`), i.e. the floor binds on a row within the
range the search reaches. Where it binds on none, the rows cannot tell it, and a search free to move it would set
the held-out rows' floor at random."""


SEQ_PROBE_MOVE = 0.05
"""The default fit probes the per-sequence step cost by doubling the preset's: ``overhead_s_per_seq`` is fitted
only when some calibration row's prediction moves by more than this fraction (:func:`_row_moves`), i.e. some row
runs enough sequences at once that their cost is a fair part of its steps (130 us each is 1% of a 13 ms step at
one sequence; at 64 sequences 8.3 ms of a ~21 ms step, about 40%), and when the rows tell it from the step
overhead (:data:`SEQ_CONTRAST`)."""

SEQ_CONTRAST = 2.0
"""The per-sequence cost and the per-step ``overhead_s`` move a row in the ratio of its running sequences; the
default fit takes ``overhead_s_per_seq`` only when that ratio (each row's move by the doubled per-sequence cost
over its move by a doubled ``overhead_s``) differs between the calibration rows by at least this factor: rows that
ran at least twice as many sequences as others. Rows that all run alike move with both the same way, the two
cannot be told apart, and a search free to move both would set the held-out rows' cost at random."""


def _moves(
    before: Sequence[Mapping[str, float | None]], after: Sequence[Mapping[str, float | None]], metrics: Sequence[str]
) -> bool:
    """Whether any of the fitted ``metrics`` of any point differs by more than 0.1% between two predictions."""
    for b, a in zip(before, after, strict=True):
        for name in metrics:
            x, y = b.get(name), a.get(name)
            if x is not None and y is not None and abs(y - x) > 1e-3 * abs(x):
                return True
    return False


def _shared_preset(name: str, values: Sequence[float], differ: str, label: str, examples: str) -> float:
    """The one preset value (sorted ``values``) the calibration rows share for coefficient ``name``, which one fitted
    value must serve; :class:`CalibrationError` naming the values when they differ."""
    if len(values) > 1:
        listed = ", ".join(f"{v * 1e6:g} us" for v in values)
        raise CalibrationError(
            f"cannot fit {name} over rows whose {differ} ({label}{listed}: {examples}); calibrate them separately"
        )
    return values[0]


def _row_moves(
    before: Sequence[Mapping[str, float | None]], after: Sequence[Mapping[str, float | None]], metrics: Sequence[str]
) -> list[float]:
    """Per point, the largest relative change of its fitted ``metrics`` between two predictions (0 where none was
    predicted both times)."""
    out = []
    for b, a in zip(before, after, strict=True):
        moves = [abs(y - x) / abs(x) for name in metrics if (x := b.get(name)) and (y := a.get(name)) is not None]
        out.append(max(moves, default=0.0))
    return out


def _objective(
    points: Sequence[Measurement], preds: Sequence[Mapping[str, float | None]], metrics: Sequence[str]
) -> float:
    total, n = 0.0, 0
    for m, pred in zip(points, preds, strict=True):
        for name in metrics:
            meas = getattr(m, name)
            if meas is None or meas <= 0:
                continue
            p = pred.get(name)
            total += MISSING_PENALTY if p is None or p <= 0 else math.log(p / meas) ** 2
            n += 1
    return total / n if n else 0.0


def calibrate(
    measurements: Sequence[Measurement],
    pool: spec.PoolSpec,
    *,
    catalog: Catalog | None = None,
    params: Sequence[str] | None = None,
    metrics: Sequence[str] | None = None,
    options: HarnessOptions | None = None,
    max_evals: int = 150,
    step: float = 0.3,
    jobs: int = 1,
    catalog_files: Sequence[str] = (),
) -> Calibration:
    """Fit ``params`` of ``pool.perf`` (roofline or linear) so that simulating every measured condition
    reproduces the measurements (module docstring). ``metrics`` restricts which measured metrics count (default:
    all present). A linear pool whose coefficients are all zero starts from :func:`linear_seed`."""
    if not measurements:
        raise CalibrationError("no measurements to calibrate on")
    catalog = catalog if catalog is not None else load_catalog(list(catalog_files))
    opts = options or HarnessOptions()
    start = pool.perf
    if isinstance(start, spec.RooflinePerf):  # catalog-derived mfu/mbu made explicit: the search's start point
        from agentsim.perf.efficiency import resolved_roofline

        dep = pool.deployment
        start = resolved_roofline(start, catalog.get_hardware(dep.hardware), dep)
    fit_metrics = (
        tuple(metrics) if metrics else tuple(m for m in METRICS if any(getattr(x, m) is not None for x in measurements))
    )
    if not fit_metrics:
        raise CalibrationError("the measurements carry none of output_tok_s, ttft_s, tpot_s")
    names = list(params) if params else default_params(start, fit_metrics)
    table = ROOFLINE_PARAMS if isinstance(start, spec.RooflinePerf) else LINEAR_PARAMS
    if not isinstance(start, spec.RooflinePerf | spec.LinearPerf):
        raise CalibrationError(f"calibration fits roofline or linear perf models, not {start.kind!r}")
    unknown = [n for n in names if n not in table and n not in ENGINE_PARAMS]
    if unknown:
        raise CalibrationError(
            f"cannot fit {', '.join(unknown)} of a {start.kind} model; choose from "
            f"{', '.join([*table, *ENGINE_PARAMS])}"
        )
    if isinstance(start, spec.LinearPerf) and all(getattr(start, n) == 0 for n in LINEAR_PARAMS):
        start = linear_seed(pool, catalog)
    space = [table[n] if n in table else ENGINE_PARAMS[n] for n in names]
    start_pool = replace_model(pool, perf=start)
    plans = [plan_condition(start_pool, m, catalog, opts) for m in measurements]
    if isinstance(start, spec.RooflinePerf) and start.overhead_s is None:
        # Unset: the engine preset's step overhead is where the search starts (and what it fits).
        start = start.model_copy(update={"overhead_s": plans[0].step_overhead_s})
        start_pool = replace_model(pool, perf=start)
    seq_costs = sorted({p.step_overhead_s_per_seq for p in plans})  # the rows' preset per-sequence costs
    if isinstance(start, spec.RooflinePerf) and start.overhead_s_per_seq is None and "overhead_s_per_seq" in names:
        # fitted from the preset's per-sequence cost (a zero one starts the log-scale search at SEQLESS_START_S);
        # one value serves every row, so their presets must charge one cost
        shared_seq = _shared_preset(
            "overhead_s_per_seq", seq_costs, "presets charge different per-sequence costs", "",
            "vLLM V0 and V1 rows, say",
        )  # fmt: skip
        start = start.model_copy(update={"overhead_s_per_seq": shared_seq or SEQLESS_START_S})
        start_pool = replace_model(pool, perf=start)

    floored = isinstance(start, spec.RooflinePerf) and not catalog.get_hardware(pool.deployment.hardware).dataflow
    latencies = _kernel_latencies(pool, plans, catalog) if floored else []
    # By default the kernel time is fitted too where the rows can tell it: every row launches its kernels one way
    # (CUDA graphs or eager; dataflow hardware has no kernel floor) and the floor binds on some row (probed below).
    probe_kernel = (
        params is None
        and len(latencies) == 1
        and latencies[0] > 0.0  # a kernel time of 0 (the floor turned off) is the user's, not fitted
        and isinstance(start, spec.RooflinePerf)
        and start.kernel_latency_s is None
    )
    # Likewise the per-sequence cost, where the rows can tell it (SEQ_PROBE_MOVE, SEQ_CONTRAST): every row's preset
    # charges the same one (vLLM V0 and V1 rows, say, do not), it is not the user's (neither the perf's nor the
    # engine's), and it is not 0 (a cost the preset leaves out, trtllm-bench's, is not searched for from nothing).
    probe_seq = (
        params is None
        and isinstance(start, spec.RooflinePerf)
        and start.overhead_s_per_seq is None
        and pool.deployment.engine.step_overhead_s_per_seq is None
        and len(plans) > 1
        and len(seq_costs) == 1
        and seq_costs[0] > 0.0
        and bool(start.overhead_s)  # the contrast doubles the step overhead
    )
    if isinstance(start, spec.RooflinePerf) and start.kernel_latency_s is None and "kernel_latency_s" in names:
        # fitted from the preset's kernel time; one value serves every row, so the rows must share one engine mode
        if not floored:
            raise CalibrationError(
                f"cannot fit kernel_latency_s on {pool.deployment.hardware}: dataflow hardware has no kernel floor"
            )
        shared_kernel = _shared_preset(
            "kernel_latency_s", latencies, "engines launch kernels differently", "kernel times ",
            "CUDA graphs on some rows, eager on others",
        )  # fmt: skip
        start = start.model_copy(update={"kernel_latency_s": shared_kernel or FLOORLESS_START_S})
        start_pool = replace_model(pool, perf=start)

    # Engine knobs fitted (frontend_s): the start is the planned engine's value (what the start predictions ran
    # with); the log-scale search starts from FRONTEND_START_S when that is 0.
    engine0 = {n: float(getattr(plans[0].engine, n) or 0.0) for n in names if n in ENGINE_PARAMS}

    def values_at(u: np.ndarray) -> dict[str, float]:
        return {p.name: p.from_u(float(x)) for p, x in zip(space, u, strict=True)}

    def perf_at(u: np.ndarray) -> Any:
        values = {k: v for k, v in values_at(u).items() if k not in ENGINE_PARAMS}
        return type(start).model_validate({**start.model_dump(), **values})

    def engine_at(u: np.ndarray) -> dict[str, float]:
        return {k: v for k, v in values_at(u).items() if k in ENGINE_PARAMS}

    def scenarios(perf: Any, engine: Mapping[str, float]) -> list[spec.Scenario]:
        candidate = replace_model(start_pool, perf=perf.model_dump())
        runs = [dataclasses.replace(p, engine=p.engine.model_copy(update=engine)) for p in plans] if engine else plans
        return [scenario_for(candidate, m, plan, opts.seed) for m, plan in zip(measurements, runs, strict=True)]

    with Runner(catalog, jobs) as runner:

        def f(u: np.ndarray) -> float:
            return _objective(measurements, runner.run(scenarios(perf_at(u), engine_at(u))), fit_metrics)

        start_preds = runner.run(scenarios(start, {}))
        probes = 0
        if probe_kernel:
            kernel0 = latencies[0]  # > 0: probe_kernel
            slower = start.model_copy(update={"kernel_latency_s": KERNEL_PROBE * kernel0})
            probes += 1
            if _moves(start_preds, runner.run(scenarios(slower, {})), fit_metrics):
                names.append("kernel_latency_s")
                space.append(ROOFLINE_PARAMS["kernel_latency_s"])
                start = start.model_copy(update={"kernel_latency_s": kernel0})  # what start_preds ran with
        if probe_seq and isinstance(start, spec.RooflinePerf) and start.overhead_s:  # narrowed for the type checker
            seq0 = seq_costs[0]
            busier = start.model_copy(update={"overhead_s_per_seq": 2.0 * seq0})
            probes += 1
            by_seq = _row_moves(start_preds, runner.run(scenarios(busier, {})), fit_metrics)
            if max(by_seq) > SEQ_PROBE_MOVE:
                steadier = start.model_copy(update={"overhead_s": 2.0 * start.overhead_s})
                probes += 1
                by_step = _row_moves(start_preds, runner.run(scenarios(steadier, {})), fit_metrics)
                ratios = [s / o for s, o in zip(by_seq, by_step, strict=True) if o > 0.0]
                if len(ratios) > 1 and max(ratios) >= SEQ_CONTRAST * min(ratios):
                    names.append("overhead_s_per_seq")
                    space.append(ROOFLINE_PARAMS["overhead_s_per_seq"])
                    start = start.model_copy(update={"overhead_s_per_seq": seq0})  # what start_preds ran with
        u0 = [
            p.to_u(engine0[p.name] or FRONTEND_START_S if p.name in engine0 else getattr(start, p.name)) for p in space
        ]
        u_best, f_best, evals = nelder_mead(f, u0, step=step, max_evals=max_evals)
        fitted, fitted_engine = perf_at(u_best), engine_at(u_best)
        preds = runner.run(scenarios(fitted, fitted_engine))
    # the one preset value every row had for each fitted kernel time / per-sequence cost (what the fit is for)
    shared = {"kernel_latency_s": latencies, "overhead_s_per_seq": seq_costs}
    presets = {n: values[0] for n, values in shared.items() if n in names and len(values) == 1}
    return Calibration(
        perf=fitted,
        start=start,
        pool=with_perf(pool, fitted, fitted_engine),
        params=tuple(names),
        points=tuple(PointResult(m, p) for m, p in zip(measurements, preds, strict=True)),
        start_points=tuple(PointResult(m, p) for m, p in zip(measurements, start_preds, strict=True)),
        objective=f_best,
        evaluations=evals + 2 + probes,
        metrics=fit_metrics,
        engine=fitted_engine,
        engine_start=engine0,
        presets=presets,
    )
