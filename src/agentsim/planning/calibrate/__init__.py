"""Calibration: fit a perf model's coefficients to serving-benchmark measurements by simulating every measured
condition, and write the fit as a perf YAML.

One concept per module, in the order data flows:

* :mod:`~agentsim.planning.calibrate.measurements`: :class:`Measurement` and the readers for a generic CSV,
  vLLM ``benchmark_serving`` JSON and AIPerf / GenAI-Perf exports (:func:`read_measurements`);
* :mod:`~agentsim.planning.calibrate.bench`: how the benchmark loaded the server and configured the engine, from
  the row's labels (bursts and finite runs, ``trtllm-bench``'s batch limits, vLLM V0 defaults, server flags);
* :mod:`~agentsim.planning.calibrate.harness`: the pool a measurement's labels describe
  (:func:`pool_from_labels`) and the scenario that reproduces a measured condition (:func:`condition_scenario`,
  :class:`HarnessOptions`), simulated by :func:`simulate_points`;
* :mod:`~agentsim.planning.calibrate.fit`: the search (:func:`calibrate`, scipy's Nelder-Mead in transformed
  coordinates) and its result (:class:`Calibration`, :func:`mape`);
* :mod:`~agentsim.planning.calibrate.perfyaml`: the fit as YAML (:func:`write_perf_yaml`,
  :func:`load_perf_yaml`, :func:`with_perf`).

The names below are the package's interface (``agentsim.planning.fidelity`` and the CLI import them from here).
"""

from agentsim.planning.calibrate.fit import (
    LINEAR_PARAMS,
    ROOFLINE_PARAMS,
    Calibration,
    Param,
    PointResult,
    calibrate,
    default_params,
    linear_seed,
    mape,
    nelder_mead,
)
from agentsim.planning.calibrate.harness import (
    PRESET_KNOBS,
    HarnessOptions,
    catalog_id,
    condition_engine,
    condition_scenario,
    for_presets,
    kv_tokens,
    label_preset,
    pool_from_labels,
    simulate_points,
)
from agentsim.planning.calibrate.measurements import (
    METRICS,
    CalibrationError,
    Measurement,
    filter_measurements,
    read_measurements,
)
from agentsim.planning.calibrate.perfyaml import (
    PerfAny,
    load_perf,
    load_perf_engine,
    load_perf_fitted_for,
    load_perf_yaml,
    with_perf,
    write_perf_yaml,
)

__all__ = [
    "LINEAR_PARAMS",
    "METRICS",
    "PRESET_KNOBS",
    "ROOFLINE_PARAMS",
    "Calibration",
    "CalibrationError",
    "HarnessOptions",
    "Measurement",
    "Param",
    "PerfAny",
    "PointResult",
    "calibrate",
    "catalog_id",
    "condition_engine",
    "condition_scenario",
    "default_params",
    "filter_measurements",
    "for_presets",
    "kv_tokens",
    "label_preset",
    "linear_seed",
    "load_perf",
    "load_perf_engine",
    "load_perf_fitted_for",
    "load_perf_yaml",
    "mape",
    "nelder_mead",
    "pool_from_labels",
    "read_measurements",
    "simulate_points",
    "with_perf",
    "write_perf_yaml",
]
