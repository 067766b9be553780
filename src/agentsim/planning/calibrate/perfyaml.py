"""Perf YAML: a calibration written as a perf spec with its provenance and residuals, and read back.

:func:`write_perf_yaml` writes ``perf`` (ready to paste under a pool's ``perf:``, or to pass to ``agentsim
fidelity --perf``), the ``deployment`` it was fitted on, ``match`` (the labels every calibration row shared),
``fit`` (method, coefficients, start, MAPEs) and ``residuals``. :func:`load_perf_yaml` reads such a file, or a
plain perf spec, back; :func:`with_perf` puts a perf spec on a pool.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import yaml

from agentsim import spec
from agentsim.files import write_text
from agentsim.planning.calibrate.fit import ENGINE_PARAMS, Calibration, PointResult
from agentsim.planning.calibrate.harness import PerfAny, with_perf
from agentsim.planning.calibrate.measurements import CalibrationError
from agentsim.yamlio import TextFileError, loads, read_text

__all__ = [
    "PerfAny",
    "load_perf",
    "load_perf_engine",
    "load_perf_fitted_for",
    "load_perf_yaml",
    "with_perf",
    "write_perf_yaml",
]


def _shared_labels(points: Iterable[PointResult]) -> dict[str, str]:
    keys = ("hardware", "model", "n_gpus", "precision", "engine")
    labels = [p.measurement.labels for p in points]
    out = {}
    for k in keys:
        values = {lab.get(k) for lab in labels}
        if len(values) == 1 and None not in values:
            out[k] = str(values.pop())
    return out


def write_perf_yaml(
    result: Calibration, path: str | Path, *, measurements_file: str = "", overwrite: bool = False
) -> Path:
    """Write ``result`` as YAML: ``perf`` (ready to paste under a pool's ``perf:``, or to pass to ``agentsim
    fidelity --perf``), ``deployment`` it was fitted on, ``match`` (labels every calibration row shared, so
    ``fidelity`` applies it to the same hardware and model), ``fit`` (method, coefficients, start, MAPEs) and
    ``residuals`` (measured, predicted and error per point). Written atomically; an existing file is refused
    unless ``overwrite``."""

    def clean(d: Mapping[str, float | None]) -> dict[str, float | None]:
        return {k: (None if v is None else float(f"{v:.6g}")) for k, v in d.items()}

    doc: dict[str, Any] = {
        "perf": result.perf.model_dump(mode="json"),
        # engine knobs fitted with the perf (frontend_s): fidelity --perf applies them together
        **({"engine": {k: float(f"{v:.6g}") for k, v in result.engine.items()}} if result.engine else {}),
        "deployment": result.pool.deployment.model_dump(mode="json", exclude_defaults=True),
        "match": _shared_labels(result.points),
        "fit": {
            "method": "Nelder-Mead over simulated benchmark conditions (agentsim.planning.calibrate)",
            "measurements": measurements_file,
            "parameters": list(result.params),
            "metrics": list(result.metrics),
            "objective": "mean squared log error",
            "objective_value": float(f"{result.objective:.6g}"),
            "evaluations": result.evaluations,
            "start": {p: result.value(p, start=True) for p in result.params},
            # the preset value every row had for a fitted kernel time / per-sequence cost: rows whose preset gives
            # another keep their own (load_perf_fitted_for)
            **({"preset": dict(result.presets)} if result.presets else {}),
            "mape_pct": clean({m: result.mape(m) for m in result.metrics}),
            "mape_pct_at_start": clean({m: result.mape(m, start=True) for m in result.metrics}),
        },
        "residuals": [
            {
                "isl": p.measurement.isl,
                "osl": p.measurement.osl,
                "load": p.measurement.load,
                "measured": clean(p.measurement.measured()),
                "predicted": clean({m: p.predicted.get(m) for m in result.metrics}),
                "error_pct": clean({m: p.error_pct(m) for m in result.metrics}),
            }
            for p in result.points
        ],
    }
    header = (
        "# Perf model fitted by `agentsim calibrate`: use `perf` as a pool's perf, or `agentsim fidelity --perf`.\n"
    )
    return write_text(path, header + yaml.safe_dump(doc, sort_keys=False, width=120), overwrite=overwrite)


def load_perf_yaml(path: str | Path) -> tuple[PerfAny, dict[str, str]]:
    """A perf spec and its ``match`` labels from a file written by :func:`write_perf_yaml`, or from a plain YAML
    mapping holding just a perf spec (``kind: roofline, mfu: ...``; then ``match`` is empty)."""
    perf, match, _ = load_perf(path)
    return perf, match


def load_perf_engine(path: str | Path) -> dict[str, float]:
    """The engine knobs a calibration fitted with its perf (``engine`` in a file written by
    :func:`write_perf_yaml`: ``frontend_s``), empty for a plain perf spec."""
    return load_perf(path)[2]


FITTED_FOR_BOUNDS: Final[Mapping[str, tuple[float, str]]] = MappingProxyType(
    {"kernel_latency_s": (1e-3, "a kernel time"), "overhead_s_per_seq": (1e-2, "a per-sequence cost")}
)
"""Per coefficient of :data:`agentsim.planning.calibrate.harness.PRESET_KNOBS`: the largest preset value (s) a
file may record for it, and what it is, for the error."""


def load_perf_fitted_for(path: str | Path) -> dict[str, float]:
    """The preset values a file's fitted kernel time and per-sequence cost are for: its ``fit.preset`` (the value
    every calibration row's preset had: 10 us under CUDA graphs or 32 us eager; vLLM V1's 130 us a sequence, 0 under
    ``trtllm-bench``); for a file written before that key, the ``fit.start`` of a fitted kernel time. A condition
    whose preset gives another keeps its own (:func:`agentsim.planning.calibrate.harness.for_presets`). Raises
    :class:`CalibrationError` naming the field when a value is not in [0, bound] (a start: (0, bound])."""
    p = Path(path)
    fit = _read_doc(p).get("fit")
    if not isinstance(fit, Mapping):
        return {}
    if "preset" in fit:
        preset = fit.get("preset")
        if not isinstance(preset, Mapping) or not set(preset) <= set(FITTED_FOR_BOUNDS):
            raise CalibrationError(f"{p}: fit.preset must map {' and/or '.join(FITTED_FOR_BOUNDS)} to seconds")
        return {name: _bounded(p, f"fit.preset.{name}", preset[name], name, 0.0) for name in preset}
    if "kernel_latency_s" not in (fit.get("parameters") or []):
        return {}
    start = fit.get("start")
    value = start.get("kernel_latency_s") if isinstance(start, Mapping) else None
    return {"kernel_latency_s": _bounded(p, "fit.start.kernel_latency_s", value, "kernel_latency_s", None)}


def _bounded(p: Path, field: str, value: Any, name: str, lowest: float | None) -> float:
    """``value`` as seconds in ``[lowest, bound]`` (``(0, bound]`` when ``lowest`` is None) for coefficient ``name``,
    else :class:`CalibrationError` naming ``field``."""
    upper, what = FITTED_FOR_BOUNDS[name]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and value <= upper  # NaN fails here
    ok = ok and (value > 0.0 if lowest is None else value >= lowest)
    if not ok:
        low = "(0" if lowest is None else f"[{lowest:g}"
        raise CalibrationError(f"{p}: {field} {value!r} is not {what} in {low}, {upper:g}] s")
    return float(value)


def _read_doc(p: Path) -> Mapping[str, Any]:
    """A perf YAML's top-level mapping; :class:`CalibrationError` for a file that cannot be read or is not one."""
    try:
        doc = loads(read_text(p))
    except TextFileError as e:
        raise CalibrationError(str(e)) from None
    except yaml.YAMLError as e:
        raise CalibrationError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(doc, Mapping):
        raise CalibrationError(f"{p}: expected a mapping")
    return doc


def load_perf(path: str | Path) -> tuple[PerfAny, dict[str, str], dict[str, float]]:
    """The perf spec, ``match`` labels and fitted engine knobs of a perf YAML, read once. The engine knobs are
    validated as the scenario's ``deployment.engine`` fields they are (finite, in range, the field named). Raises
    :class:`CalibrationError` for a file that is not one."""
    from pydantic import TypeAdapter, ValidationError

    p = Path(path)
    doc = _read_doc(p)
    try:
        perf: PerfAny = TypeAdapter(spec.PerfSpec).validate_python(doc.get("perf", doc))
    except ValidationError as e:
        raise CalibrationError(f"{p}: not a perf spec: {e}") from None
    match = doc.get("match") or {}
    labels = {str(k): str(v) for k, v in match.items()} if isinstance(match, Mapping) else {}
    raw = doc.get("engine") or {}
    if not isinstance(raw, Mapping) or set(raw) - set(ENGINE_PARAMS):
        raise CalibrationError(f"{p}: engine holds the fitted engine knobs ({', '.join(ENGINE_PARAMS)}), got {raw!r}")
    try:
        knobs = spec.EngineSpec.model_validate(dict(raw))
    except ValidationError as e:
        raise CalibrationError(f"{p}: engine: {e}") from None
    return perf, labels, {str(k): float(getattr(knobs, str(k))) for k in raw}
