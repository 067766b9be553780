"""Fit a perf model's coefficients to benchmark measurements *through the simulator*.

A serving benchmark reports what a client saw: output tokens/s, mean TTFT and TPOT at some input length
``isl``, output length ``osl`` and load (a fixed number of concurrent requests, a request rate, or "everything
queued at once"). Those figures mix the engine's step times with batching and queueing, so fitting step-time
coefficients to them directly (e.g. ``TPOT = step time``) is biased. Instead, for every measured condition this
module builds a small scenario that reproduces the benchmark (:func:`condition_scenario`), simulates it with
candidate coefficients, and minimizes the error between simulated and measured metrics with a derivative-free
Nelder-Mead search (:func:`nelder_mead`; scipy is not a dependency). The result (:class:`Calibration`) is a perf
spec with the fitted values plus the residual of every point, written as YAML by :func:`write_perf_yaml`.

**Measurements** (:func:`read_measurements`) come from

* a generic CSV, one row per condition, header names case-insensitive: ``isl`` (or ``input_len``,
  ``input_tokens``, ``prompt_tokens``), ``osl`` (``output_len``, ``output_tokens``), the load as
  ``concurrency`` (``max_concurrency``) or ``qps`` (``request_rate``, ``rate``) or ``concurrency_or_qps`` (a
  number is a concurrency, ``"2.5 qps"`` a rate, anything with ``offline`` or ``max`` means all requests queued
  at once; no load column also means offline), and any of ``output_tok_s`` (``output_tok_s_total``,
  ``output_tokens_per_s``, ``output_throughput``; or ``output_tok_s_per_gpu`` times ``n_gpus``), ``ttft_ms`` /
  ``ttft_s`` (or ``mean_ttft_ms``), ``tpot_ms`` / ``tpot_s`` (``mean_tpot_ms``, ``itl_ms``), and optionally
  ``num_requests``. Every other column is kept as a *label* (``hardware``, ``model``, ``n_gpus``, ``tp``,
  ``precision``, ``engine``, ``notes``...), used to derive the deployment (:func:`pool_from_labels`) and to
  group rows;
* vLLM ``benchmark_serving`` / ``vllm bench serve --save-result`` JSON: ``completed``, ``total_input_tokens``
  and ``total_output_tokens`` (isl and osl are their means per completed request), ``max_concurrency`` and
  ``request_rate`` (``inf`` or absent with no concurrency cap: offline), ``output_throughput``,
  ``mean_ttft_ms``, ``mean_tpot_ms``, ``num_prompts``, ``model_id``. A JSON list or JSON-lines file of such
  objects gives several conditions;
* AIPerf ``profile_export_aiperf.json`` and GenAI-Perf ``profile_export_genai_perf.json``: metric objects
  ``{"unit": ..., "avg": ...}`` named ``input_sequence_length``, ``output_sequence_length``,
  ``output_token_throughput``, ``time_to_first_token``, ``inter_token_latency`` (units ``ms``, ``ns``, ``s``
  honoured), and the load from ``input_config`` (AIPerf: ``loadgen.concurrency`` / ``loadgen.request_rate``;
  GenAI-Perf: ``concurrency`` / ``request_rate``).

**Reproducing a condition** (:func:`condition_scenario`, :class:`HarnessOptions`): a fixed profile (``isl``
prompt, ``osl`` output tokens, no shared prefix) on the pool being calibrated; ``concurrency`` becomes a closed
loop of that many agents with zero think time, ``qps`` a Poisson process, offline a closed loop with more agents
than the engine can batch (so its queue never empties). Agents start spread over one request lifetime ``L``
(estimated from the starting perf model), the summary window skips ``warmup_waves`` lifetimes after that, and
the window lasts ``waves`` lifetimes (at least ``min_requests / qps`` for open loops). The horizon is fixed
before the search starts, so the objective is a deterministic function of the coefficients. ``admission:
no-evict`` emulates TensorRT-LLM's default ``GUARANTEED_NO_EVICT`` scheduler by capping ``max_num_seqs`` at
``kv_capacity // (isl + osl)`` (the simulated engine is vLLM-like and would otherwise over-admit and preempt);
``auto`` does so for rows whose ``engine`` label names TensorRT-LLM. ``kv_free_fraction`` emulates TensorRT-LLM's
``kv_cache_free_gpu_mem_fraction``: the KV cache is that fraction of the memory the weights leave.

**The objective** is the mean over points and measured metrics of ``log(predicted / measured)**2``: symmetric in
over- and under-prediction, scale-free across metrics. Coefficients are searched in transformed coordinates
(logit for fractions in (0, 1], log for positive seconds), so every candidate is valid.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from agentsim import spec
from agentsim.catalog import Catalog, load_catalog

__all__ = [
    "METRICS",
    "Calibration",
    "CalibrationError",
    "HarnessOptions",
    "Measurement",
    "Param",
    "PointResult",
    "calibrate",
    "catalog_id",
    "condition_scenario",
    "default_params",
    "filter_measurements",
    "kv_tokens",
    "linear_seed",
    "load_perf_yaml",
    "mape",
    "nelder_mead",
    "pool_from_labels",
    "read_measurements",
    "simulate_points",
    "with_perf",
    "write_perf_yaml",
]

METRICS = ("output_tok_s", "ttft_s", "tpot_s")
"""The metrics a measurement may carry and the simulator predicts: total output tokens/s of the pool, mean
time to first token and mean time per output token (after the first), in seconds."""

MISSING_PENALTY = 4.0
"""Objective contribution of a metric the simulation could not produce (e.g. no call finished in the window):
as bad as a factor e**2 error."""


class CalibrationError(ValueError):
    """Measurements or options that cannot be calibrated (unreadable file, no usable rows, ambiguous pool)."""


# --------------------------------------------------------------------------- measurements


@dataclass(frozen=True)
class Measurement:
    """One measured benchmark condition and what was measured there (any metric may be missing)."""

    isl: float
    osl: float
    concurrency: float | None = None
    qps: float | None = None
    output_tok_s: float | None = None
    ttft_s: float | None = None
    tpot_s: float | None = None
    num_requests: int | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def offline(self) -> bool:
        """All requests queued at once (neither a concurrency nor a rate was given)."""
        return self.concurrency is None and self.qps is None

    @property
    def load(self) -> str:
        """The load in words: ``conc 32``, ``2.5 qps`` or ``offline``."""
        if self.concurrency is not None:
            return f"conc {self.concurrency:g}"
        if self.qps is not None:
            return f"{self.qps:g} qps"
        return "offline"

    def measured(self) -> dict[str, float]:
        """The metrics present, by name."""
        out = {}
        for m in METRICS:
            v = getattr(self, m)
            if v is not None:
                out[m] = float(v)
        return out

    def describe(self) -> str:
        """``isl/osl load`` for tables."""
        return f"{self.isl:g}/{self.osl:g} {self.load}"


_ISL = ("isl", "input_len", "input_tokens", "prompt_tokens", "input_sequence_length")
_OSL = ("osl", "output_len", "output_tokens", "output_sequence_length")
_CONC = ("concurrency", "max_concurrency", "conc")
_QPS = ("qps", "request_rate", "rate")
_TOKS = ("output_tok_s", "output_tok_s_total", "output_tokens_per_s", "output_throughput", "output_tps")
_TTFT = (("ttft_s", 1.0), ("ttft_ms", 1e-3), ("mean_ttft_ms", 1e-3), ("ttft_mean_ms", 1e-3))
_TPOT = (("tpot_s", 1.0), ("tpot_ms", 1e-3), ("mean_tpot_ms", 1e-3), ("tpot_mean_ms", 1e-3), ("itl_ms", 1e-3))
_NREQ = ("num_requests", "num_prompts", "requests")


def _num(text: str | None) -> float | None:
    if text is None:
        return None
    t = text.strip().replace(",", "")
    if not t or t.lower() in ("nan", "none", "null", "-"):
        return None
    try:
        return float(t)
    except ValueError:
        return None


def _first(row: Mapping[str, str], names: Iterable[str]) -> tuple[str | None, str | None]:
    for n in names:
        if n in row and row[n].strip():
            return n, row[n]
    return None, None


def _load_from_text(text: str) -> tuple[float | None, float | None]:
    """``concurrency_or_qps`` cell -> (concurrency, qps); both None means offline."""
    t = text.strip().lower()
    if not t or "offline" in t or "max" in t or t in ("inf", "infinite"):
        return None, None
    number = re.search(r"[-+]?\d*\.?\d+(?:e[-+]?\d+)?", t)
    if number is None:
        raise CalibrationError(f"cannot read the load {text!r}: expected a concurrency, 'N qps' or 'offline'")
    value = float(number.group(0))
    if "qps" in t or "req/s" in t or "rps" in t or "/s" in t:
        return None, value
    return value, None


def _measurement_from_row(row: Mapping[str, str], origin: str) -> Measurement:
    used: set[str] = set()

    def take(names: Iterable[str]) -> float | None:
        key, value = _first(row, names)
        if key is not None:
            used.add(key)
        return _num(value)

    isl, osl = take(_ISL), take(_OSL)
    if isl is None or osl is None:
        raise CalibrationError(f"{origin}: needs isl and osl columns (or input_len/output_len); got {sorted(row)}")
    conc, qps = take(_CONC), take(_QPS)
    if conc is None and qps is None and "concurrency_or_qps" in row:
        used.add("concurrency_or_qps")
        conc, qps = _load_from_text(row["concurrency_or_qps"])
    toks = take(_TOKS)
    if toks is None and row.get("output_tok_s_per_gpu", "").strip():
        used.add("output_tok_s_per_gpu")
        per_gpu, gpus = _num(row["output_tok_s_per_gpu"]), _num(row.get("n_gpus"))
        if per_gpu is not None and gpus is not None:
            toks = per_gpu * gpus

    def take_seconds(names: Iterable[tuple[str, float]]) -> float | None:
        for name, scale in names:
            v = _num(row.get(name))
            if v is not None:
                used.add(name)
                return v * scale
        return None

    ttft, tpot = take_seconds(_TTFT), take_seconds(_TPOT)
    nreq = take(_NREQ)
    labels = {k: v for k, v in row.items() if k not in used and v is not None}
    if (conc is not None and conc <= 0) or (qps is not None and qps <= 0):
        raise CalibrationError(f"{origin}: concurrency and qps must be positive")
    return Measurement(
        isl=isl,
        osl=osl,
        concurrency=conc,
        qps=qps,
        output_tok_s=toks,
        ttft_s=ttft,
        tpot_s=tpot,
        num_requests=int(nreq) if nreq else None,
        labels=labels,
        source=origin,
    )


def _read_csv(path: Path) -> list[Measurement]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = [{(k or "").strip().lower(): (v or "").strip() for k, v in r.items()} for r in csv.DictReader(f)]
    return [_measurement_from_row(r, f"{path}:{i + 2}") for i, r in enumerate(rows)]


def _stat(doc: Mapping[str, Any], name: str, to_seconds: bool = False) -> float | None:
    """``avg`` of an AIPerf/GenAI-Perf metric object, converted to seconds when asked."""
    obj = doc.get(name)
    if not isinstance(obj, Mapping):
        return None
    value = obj.get("avg", obj.get("mean"))
    if not isinstance(value, int | float):
        return None
    if to_seconds:
        unit = str(obj.get("unit", "ms")).lower()
        value = value * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0}.get(unit, 1e-3)
    return float(value)


def _from_perf_export(doc: Mapping[str, Any], origin: str) -> Measurement:
    isl = _stat(doc, "input_sequence_length")
    osl = _stat(doc, "output_sequence_length")
    config = doc.get("input_config") or {}
    loadgen = config.get("loadgen") if isinstance(config.get("loadgen"), Mapping) else config
    if isl is None and isinstance(config, Mapping):
        prompt = ((config.get("input") or {}).get("prompt") or {}) if isinstance(config.get("input"), Mapping) else {}
        isl = (prompt.get("input_tokens") or {}).get("mean") if isinstance(prompt, Mapping) else None
    if isl is None or osl is None:
        raise CalibrationError(f"{origin}: no input_sequence_length / output_sequence_length averages")
    conc = loadgen.get("concurrency") if isinstance(loadgen, Mapping) else None
    rate = loadgen.get("request_rate") if isinstance(loadgen, Mapping) else None
    qps = float(rate) if isinstance(rate, int | float) and math.isfinite(rate) and rate > 0 else None
    concurrency = float(conc) if isinstance(conc, int | float) and conc > 0 and qps is None else None
    model = ""
    endpoint = config.get("endpoint") if isinstance(config, Mapping) else None
    if isinstance(endpoint, Mapping) and endpoint.get("model_names"):
        model = str(endpoint["model_names"][0])
    elif isinstance(config, Mapping) and config.get("model_names"):
        model = str(config["model_names"][0])
    return Measurement(
        isl=float(isl),
        osl=float(osl),
        concurrency=concurrency,
        qps=qps,
        output_tok_s=_stat(doc, "output_token_throughput"),
        ttft_s=_stat(doc, "time_to_first_token", to_seconds=True),
        tpot_s=_stat(doc, "inter_token_latency", to_seconds=True),
        labels={"model": model} if model else {},
        source=origin,
    )


def _from_vllm(doc: Mapping[str, Any], origin: str) -> Measurement:
    completed = doc.get("completed") or 0
    if not completed:
        raise CalibrationError(f"{origin}: no completed requests")
    isl = float(doc["total_input_tokens"]) / completed
    osl = float(doc["total_output_tokens"]) / completed
    rate = doc.get("request_rate")
    if isinstance(rate, str):
        rate = math.inf if rate.lower() in ("inf", "infinity") else float(rate)
    cap = doc.get("max_concurrency")
    qps = float(rate) if isinstance(rate, int | float) and math.isfinite(rate) and rate > 0 else None
    concurrency = float(cap) if isinstance(cap, int | float) and cap > 0 and qps is None else None

    def ms(name: str) -> float | None:
        v = doc.get(name)
        return float(v) / 1e3 if isinstance(v, int | float) else None

    labels = {k: str(doc[k]) for k in ("model_id", "backend", "date") if doc.get(k) is not None}
    if "model_id" in labels:
        labels["model"] = labels["model_id"]
    nreq = doc.get("num_prompts")
    return Measurement(
        isl=isl,
        osl=osl,
        concurrency=concurrency,
        qps=qps,
        output_tok_s=float(doc["output_throughput"]) if doc.get("output_throughput") is not None else None,
        ttft_s=ms("mean_ttft_ms"),
        tpot_s=ms("mean_tpot_ms"),
        num_requests=int(nreq) if isinstance(nreq, int) else None,
        labels=labels,
        source=origin,
    )


def _from_json_doc(doc: Any, origin: str) -> Measurement:
    if not isinstance(doc, Mapping):
        raise CalibrationError(f"{origin}: expected a JSON object")
    if "total_input_tokens" in doc and "completed" in doc:
        return _from_vllm(doc, origin)
    if "output_sequence_length" in doc or "time_to_first_token" in doc:
        return _from_perf_export(doc, origin)
    raise CalibrationError(
        f"{origin}: neither a vLLM benchmark_serving result (completed, total_input_tokens) nor an AIPerf/"
        "GenAI-Perf export (output_sequence_length, time_to_first_token)"
    )


def read_measurements(path: str | Path) -> list[Measurement]:
    """Measurements from a generic CSV, a vLLM ``benchmark_serving`` JSON (object, list, or JSON lines) or an
    AIPerf/GenAI-Perf JSON export (module docstring). Raises :class:`CalibrationError` with the reason."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".csv":
            out = _read_csv(p)
        else:
            text = p.read_text(encoding="utf-8")
            try:
                doc: Any = json.loads(text)
                docs = doc if isinstance(doc, list) else [doc]
            except json.JSONDecodeError:
                docs = [json.loads(line) for line in text.splitlines() if line.strip()]
            out = [_from_json_doc(d, f"{p}[{i}]") for i, d in enumerate(docs)]
    except OSError as e:
        raise CalibrationError(f"{p}: cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, CalibrationError):
            raise
        raise CalibrationError(f"{p}: cannot parse: {e}") from None
    if not out:
        raise CalibrationError(f"{p}: no measurements")
    return out


def filter_measurements(measurements: Sequence[Measurement], where: Mapping[str, str]) -> list[Measurement]:
    """The measurements whose labels hold every ``where`` value (case-insensitive; numbers compare as numbers)."""

    def same(a: str, b: str) -> bool:
        x, y = _num(a), _num(b)
        return x == y if x is not None and y is not None else a.strip().lower() == b.strip().lower()

    return [m for m in measurements if all(same(m.labels.get(k.lower(), ""), v) for k, v in where.items())]


# --------------------------------------------------------------------------- deployments from labels


def catalog_id(name: str, ids: Iterable[str]) -> str | None:
    """The catalog id a published name refers to: ``Llama-3.3-70B-Instruct`` -> ``llama-3.3-70b``,
    ``Qwen3-235B-A22B (MoE)`` -> ``qwen3-235b-a22b``, ``H100 SXM`` -> ``h100``. None if nothing matches."""
    known = list(ids)
    n = re.sub(r"\(.*?\)", "", name.lower()).strip()
    n = n.split("/")[-1]
    n = re.sub(r"[\s_]+", "-", n)
    for suffix in ("-instruct", "-fp8", "-fp4", "-sxm5", "-sxm", "-hf"):
        n = n.replace(suffix, "")
    n = n.strip("-")
    if n in known:
        return n
    contained = [k for k in known if k in n]
    return max(contained, key=len) if contained else None


def _int_label(labels: Mapping[str, str], names: Sequence[str], pattern: str) -> int | None:
    for k in names:
        v = _num(labels.get(k))
        if v is not None and v > 0:
            return int(v)
    for k in ("notes", "config", "parallelism"):
        m = re.search(pattern, labels.get(k, ""), flags=re.IGNORECASE)
        if m:
            return int(m.group(1))
    return None


def _precision(text: str) -> spec.Precision:
    t = text.lower()
    if "fp4" in t:
        return "fp4"
    if "fp8" in t or "int8" in t:
        return "fp8"
    return "bf16"


def pool_from_labels(
    m: Measurement,
    catalog: Catalog,
    *,
    engine: spec.EngineSpec | None = None,
    perf: spec.RooflinePerf | spec.LinearPerf | spec.TablePerf | spec.CurvePerf | None = None,
    moe: Literal["auto", "tp", "ep-dp"] = "auto",
) -> spec.PoolSpec:
    """A one-replica pool for a labeled measurement: ``model`` and ``hardware`` mapped to catalog ids
    (:func:`catalog_id`), ``tp`` from a ``tp`` column, ``TPn`` in the notes, or ``n_gpus``; ``pp`` likewise;
    precision from a ``precision`` column (FP8, FP4/NVFP4/MXFP4, else bf16). MoE models: ``ep-dp`` deploys
    expert parallelism over the ``tp`` GPUs with data-parallel attention (TensorRT-LLM's published MoE recipe
    uses ``--ep`` and ``enable_attention_dp``), ``tp`` plain tensor parallelism, ``auto`` ``ep-dp`` when the
    ``engine`` label names TensorRT-LLM and ``tp`` otherwise; ``ep`` and ``dp_attention`` columns win."""
    labels = m.labels
    model = catalog_id(labels.get("model", ""), catalog.models)
    hardware = catalog_id(labels.get("hardware", ""), catalog.hardware)
    if model is None or hardware is None:
        raise CalibrationError(
            f"{m.source}: cannot map model {labels.get('model')!r} / hardware {labels.get('hardware')!r} to catalog "
            "ids; give the pool (--scenario/--pool) or add them to a catalog file"
        )
    gpus = _int_label(labels, ("n_gpus", "gpus"), r"$^")
    tp = _int_label(labels, ("tp", "tensor_parallel"), r"\bTP\s*(\d+)") or gpus or 1
    pp = _int_label(labels, ("pp", "pipeline_parallel"), r"\bPP\s*(\d+)") or 1
    arch = catalog.get_model(model)
    ep = _int_label(labels, ("ep",), r"\bEP\s*(\d+)")
    dpa_label = labels.get("dp_attention", "").strip().lower()
    recipe = moe
    if recipe == "auto":
        recipe = "ep-dp" if "tensorrt" in labels.get("engine", "").lower() else "tp"
    dpa = arch.is_moe and (dpa_label in ("1", "true", "yes") or (not dpa_label and recipe == "ep-dp" and tp > 1))
    if ep is None:
        ep = tp if dpa else 1
    deployment = spec.Deployment(
        model=model,
        hardware=hardware,
        tp=tp,
        pp=pp,
        ep=ep,
        data_parallel_attention=dpa,
        precision=_precision(labels.get("precision", "")),
        engine=engine if engine is not None else spec.EngineSpec(max_num_seqs=2048, max_batched_tokens=8192),
    )
    return spec.PoolSpec(name="bench", deployment=deployment, perf=perf or spec.RooflinePerf(), replicas=1)


# --------------------------------------------------------------------------- reproducing a condition


@dataclass(frozen=True)
class HarnessOptions:
    """How benchmark conditions are reproduced in the simulator (module docstring)."""

    waves: float = 4.0
    warmup_waves: float = 1.0
    min_requests: int = 200
    max_horizon_s: float = 7200.0
    admission: Literal["auto", "engine", "no-evict"] = "auto"
    kv_free_fraction: float | None = None
    seed: int = 0


def _replace_model(model: Any, **changes: Any) -> Any:
    """A validated copy of a frozen pydantic model with some fields changed."""
    return type(model).model_validate({**model.model_dump(), **changes})


def kv_tokens(pool: spec.PoolSpec, catalog: Catalog, free_fraction: float | None = None) -> int:
    """KV capacity of one replica of ``pool``: :func:`agentsim.perf.memory.kv_capacity_tokens`, or with
    ``free_fraction`` TensorRT-LLM's rule: that fraction of the HBM the weights and the activation reserve leave.
    Raises :class:`agentsim.perf.DoesNotFitError` when nothing is left."""
    from agentsim.perf.memory import (
        ACTIVATION_RESERVE_GB,
        DoesNotFitError,
        kv_bytes_per_token,
        kv_capacity_tokens,
        kv_replication,
        weight_placement,
    )

    dep = pool.deployment
    hw, model = catalog.get_hardware(dep.hardware), catalog.get_model(dep.model)
    if free_fraction is None:
        return kv_capacity_tokens(model, hw, dep)
    hbm_weights = weight_placement(model, hw, dep).hbm_bytes
    free = hw.hbm_bytes - hbm_weights - ACTIVATION_RESERVE_GB * 1e9
    per_token = kv_bytes_per_token(model, dep) * kv_replication(model, dep)
    tokens = math.floor(free_fraction * free * dep.gpus / per_token)
    if tokens < 1:
        raise DoesNotFitError(
            f"{dep.model} {dep.precision} on {dep.gpus}x {dep.hardware} (tp={dep.tp}, pp={dep.pp}) does not fit: "
            f"weights {hbm_weights / 1e9:.1f} GB per GPU + activation reserve {ACTIVATION_RESERVE_GB:.1f} GB leave "
            f"no KV cache in {hw.hbm_gb:g} GB"
        )
    return tokens


@dataclass(frozen=True)
class _Plan:
    """A condition's fixed simulation set-up: the pool's engine knobs, the load and the time window."""

    engine: spec.EngineSpec
    arrivals: spec.Poisson | spec.Closed
    horizon_s: float
    warmup_s: float
    lifetime_s: float


def _plan(pool: spec.PoolSpec, m: Measurement, catalog: Catalog, opts: HarnessOptions) -> _Plan:
    from agentsim.perf import build_perf

    engine = pool.deployment.engine
    no_evict = opts.admission == "no-evict" or (
        opts.admission == "auto" and "tensorrt" in m.labels.get("engine", "").lower()
    )
    kv = engine.kv_capacity_tokens
    if opts.kv_free_fraction is not None and kv is None:
        kv = kv_tokens(pool, catalog, opts.kv_free_fraction)
        engine = _replace_model(engine, kv_capacity_tokens=kv, gpu_memory_utilization=1.0)
    if kv is None:
        kv = kv_tokens(pool, catalog, None)
    per_seq = m.isl + m.osl if no_evict else m.isl + m.osl / 2.0
    cap = max(1, min(engine.max_num_seqs, int(kv // max(per_seq, 1.0))))
    if no_evict and cap < engine.max_num_seqs:
        engine = _replace_model(engine, max_num_seqs=cap, max_batched_tokens=max(engine.max_batched_tokens, cap))
    replicas = max(1, pool.replicas)
    perf = build_perf(_replace_model(pool, deployment=_replace_model(pool.deployment, engine=engine)), catalog)
    budget = engine.max_batched_tokens
    chunk = float(min(m.isl, budget))
    t_pf = perf.step_time(chunk, 0.0, 0.0) / chunk if chunk > 0 else 0.0

    def lifetime(batch: float) -> float:
        b = max(1.0, min(batch, float(cap)))
        return b * m.isl * t_pf + m.osl * perf.step_time(0.0, b, b * (m.isl + m.osl / 2.0))

    if m.qps is not None:
        rate = m.qps / replicas
        batch = 1.0
        for _ in range(8):
            batch = max(1.0, min(float(cap), rate * lifetime(batch)))
        life = lifetime(batch)
        warmup = opts.warmup_waves * life
        horizon = warmup + max(opts.waves * life, opts.min_requests / m.qps)
        arrivals: spec.Poisson | spec.Closed = spec.Poisson(rate_per_s=m.qps)
    else:
        if m.concurrency is not None:
            agents = max(1, round(m.concurrency))
            batch = agents / replicas
        else:
            batch = float(cap)
            agents = replicas * (cap + max(8, cap // 4))
        life = lifetime(batch)
        warmup = (1.0 + opts.warmup_waves) * life
        horizon = warmup + opts.waves * life
        arrivals = spec.Closed(agents=agents, ramp_s=life)
    horizon = min(horizon, opts.max_horizon_s)
    warmup = min(warmup, 0.5 * horizon)
    return _Plan(engine, arrivals, horizon, warmup, life)


def condition_scenario(
    pool: spec.PoolSpec,
    m: Measurement,
    catalog: Catalog | None = None,
    options: HarnessOptions | None = None,
) -> spec.Scenario:
    """The scenario that reproduces benchmark condition ``m`` on ``pool`` (module docstring)."""
    catalog = catalog if catalog is not None else load_catalog()
    plan = _plan(pool, m, catalog, options or HarnessOptions())
    return _scenario(pool, m, plan, (options or HarnessOptions()).seed)


def _scenario(pool: spec.PoolSpec, m: Measurement, plan: _Plan, seed: int) -> spec.Scenario:
    deployment = _replace_model(pool.deployment, engine=plan.engine)
    fixed = spec.FixedProfile(
        prompt_tokens=spec.Constant(value=round(m.isl)), output_tokens=spec.Constant(value=round(m.osl))
    )
    return spec.Scenario(
        name="bench",
        seed=seed,
        horizon_s=plan.horizon_s,
        warmup_s=plan.warmup_s,
        sample_interval_s=plan.horizon_s,
        workload=[spec.WorkloadSpec(name="bench", profile=fixed, arrivals=plan.arrivals)],
        cluster=spec.ClusterSpec(
            pools=[_replace_model(pool, deployment=deployment, replicas=max(1, pool.replicas))],
            router=spec.LeastLoad(),
        ),
        pricing=spec.Rental(usd_per_gpu_hour=1.0),
    )


def _predict(scenario: spec.Scenario, catalog: Catalog) -> dict[str, float | None]:
    """Simulate a condition's scenario; its metrics. In a closed loop with zero think time the throughput
    follows from the interactive response-time law ``X = N / R`` (``N`` agents, ``R`` mean request latency in the
    window) times the output tokens per request: exact in steady state and smooth in the coefficients, whereas
    counting the tokens of a short window jumps by a whole step's tokens as coefficients move (which stalls
    the search). Open loops (and closed loops where no request completed in the window) count tokens."""
    from agentsim.engine.sim import run

    summary = run(scenario, catalog=catalog).summary
    throughput = summary.get("output_tokens_per_s")
    workload = scenario.workload[0]
    e2e = (summary.get("call_e2e_s") or {}).get("mean")
    if (
        isinstance(workload, spec.WorkloadSpec)
        and isinstance(workload.arrivals, spec.Closed)
        and isinstance(workload.profile, spec.FixedProfile)
        and isinstance(workload.profile.output_tokens, spec.Constant)
        and e2e
    ):
        throughput = workload.arrivals.agents * workload.profile.output_tokens.value / e2e
    return {
        "output_tok_s": throughput,
        "ttft_s": (summary.get("ttft_s") or {}).get("mean"),
        "tpot_s": (summary.get("tpot_s") or {}).get("mean"),
    }


def _predict_files(scenario: spec.Scenario, catalog_files: tuple[str, ...]) -> dict[str, float | None]:
    """Process-pool entry point: catalogs do not pickle, so workers rebuild theirs from files."""
    return _predict(scenario, load_catalog(list(catalog_files)))


class _Runner:
    """Simulates lists of scenarios, in this process or in a pool of worker processes."""

    def __init__(self, catalog: Catalog, jobs: int = 1, catalog_files: Sequence[str] = ()) -> None:
        self.catalog = catalog
        self.jobs = jobs
        self.files = tuple(str(f) for f in catalog_files)
        self._pool: Any = None

    def __enter__(self) -> _Runner:
        if self.jobs > 1:
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=self.jobs)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def run(self, scenarios: Sequence[spec.Scenario]) -> list[dict[str, float | None]]:
        if self._pool is None or len(scenarios) < 2:
            return [_predict(s, self.catalog) for s in scenarios]
        return list(self._pool.map(_predict_files, scenarios, [self.files] * len(scenarios)))


def simulate_points(
    pool: spec.PoolSpec | Sequence[spec.PoolSpec],
    measurements: Sequence[Measurement],
    catalog: Catalog | None = None,
    options: HarnessOptions | None = None,
    *,
    jobs: int = 1,
    catalog_files: Sequence[str] = (),
) -> list[dict[str, float | None]]:
    """Predicted metrics for each measurement on ``pool`` (one pool for all, or one per measurement)."""
    catalog = catalog if catalog is not None else load_catalog(list(catalog_files))
    opts = options or HarnessOptions()
    pools = list(pool) if isinstance(pool, Sequence) else [pool] * len(measurements)
    scenarios = [
        _scenario(p, m, _plan(p, m, catalog, opts), opts.seed) for p, m in zip(pools, measurements, strict=True)
    ]
    with _Runner(catalog, jobs, catalog_files) as runner:
        return runner.run(scenarios)


# --------------------------------------------------------------------------- the search


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
    """Minimize ``f`` from ``x0`` with the Nelder-Mead simplex method (reflection 1, expansion 2, contraction
    1/2, shrink 1/2), restarting ``restarts`` times from the best point with a fresh simplex (Nelder-Mead can
    stall on a collapsed simplex; a restart is the standard remedy). Stops when the simplex is smaller than
    ``xtol`` in every coordinate and its values differ by less than ``ftol``, or after ``max_evals``
    evaluations. Returns ``(x_best, f_best, evaluations)``."""
    x0_arr = np.asarray(x0, dtype=np.float64)
    n = x0_arr.size
    steps = np.broadcast_to(np.asarray(step, dtype=np.float64), (n,)).copy()
    evals = 0

    def fx(x: np.ndarray) -> float:
        nonlocal evals
        evals += 1
        value = float(f(x))
        return value if math.isfinite(value) else math.inf

    best_x, best_f = x0_arr, fx(x0_arr)
    for _ in range(restarts + 1):
        simplex = [best_x.copy()]
        values = [best_f]
        for i in range(n):
            x = best_x.copy()
            x[i] += steps[i]
            simplex.append(x)
            values.append(fx(x))
        while evals < max_evals:
            order = np.argsort(values)
            simplex = [simplex[i] for i in order]
            values = [values[i] for i in order]
            spread = max(float(np.max(np.abs(s - simplex[0]))) for s in simplex[1:]) if n else 0.0
            if spread < xtol and abs(values[-1] - values[0]) < ftol:
                break
            centroid = np.mean(simplex[:-1], axis=0)
            worst = simplex[-1]
            xr = centroid + (centroid - worst)
            fr = fx(xr)
            if fr < values[0]:
                xe = centroid + 2.0 * (centroid - worst)
                fe = fx(xe)
                simplex[-1], values[-1] = (xe, fe) if fe < fr else (xr, fr)
            elif fr < values[-2]:
                simplex[-1], values[-1] = xr, fr
            else:
                outside = fr < values[-1]
                xc = centroid + 0.5 * ((xr if outside else worst) - centroid)
                fc = fx(xc)
                if fc < (fr if outside else values[-1]):
                    simplex[-1], values[-1] = xc, fc
                else:
                    for i in range(1, n + 1):
                        simplex[i] = simplex[0] + 0.5 * (simplex[i] - simplex[0])
                        values[i] = fx(simplex[i])
        i_best = int(np.argmin(values))
        if values[i_best] <= best_f:
            best_x, best_f = simplex[i_best], values[i_best]
        if evals >= max_evals:
            break
        steps = steps * 0.5
    return best_x, best_f, evals


@dataclass(frozen=True)
class Param:
    """A coefficient of a perf spec searched over: its field name and transform (``logit``: a fraction in
    (0, 1]; ``log``: a positive number)."""

    name: str
    transform: Literal["logit", "log"]

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
        return math.exp(min(u, 50.0))


ROOFLINE_PARAMS = {
    "mfu": Param("mfu", "logit"),
    "mbu": Param("mbu", "logit"),
    "overhead_s": Param("overhead_s", "log"),
    "comm_efficiency": Param("comm_efficiency", "logit"),
    "collective_latency_s": Param("collective_latency_s", "log"),
}
LINEAR_PARAMS = {
    "alpha_s": Param("alpha_s", "log"),
    "beta_s_per_prefill_token": Param("beta_s_per_prefill_token", "log"),
    "gamma_s_per_context_token": Param("gamma_s_per_context_token", "log"),
    "delta_s_per_seq": Param("delta_s_per_seq", "log"),
}


def default_params(perf: Any) -> list[str]:
    """The coefficients fitted by default: roofline ``mfu, mbu, overhead_s``; linear all four."""
    if isinstance(perf, spec.RooflinePerf):
        return ["mfu", "mbu", "overhead_s"]
    if isinstance(perf, spec.LinearPerf):
        return list(LINEAR_PARAMS)
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


@dataclass(frozen=True)
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


@dataclass(frozen=True)
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

    def mape(self, metric: str, *, start: bool = False) -> float | None:
        """MAPE of ``metric`` with the fitted (or the starting) coefficients."""
        return mape(self.start_points if start else self.points, metric)


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
    names = list(params) if params else default_params(start)
    table = ROOFLINE_PARAMS if isinstance(start, spec.RooflinePerf) else LINEAR_PARAMS
    if not isinstance(start, spec.RooflinePerf | spec.LinearPerf):
        raise CalibrationError(f"calibration fits roofline or linear perf models, not {start.kind!r}")
    unknown = [n for n in names if n not in table]
    if unknown:
        raise CalibrationError(
            f"cannot fit {', '.join(unknown)} of a {start.kind} model; choose from {', '.join(table)}"
        )
    if isinstance(start, spec.LinearPerf) and all(getattr(start, n) == 0 for n in LINEAR_PARAMS):
        start = linear_seed(pool, catalog)
    fit_metrics = (
        tuple(metrics) if metrics else tuple(m for m in METRICS if any(getattr(x, m) is not None for x in measurements))
    )
    if not fit_metrics:
        raise CalibrationError("the measurements carry none of output_tok_s, ttft_s, tpot_s")
    space = [table[n] for n in names]
    start_pool = _replace_model(pool, perf=start)
    plans = [_plan(start_pool, m, catalog, opts) for m in measurements]

    def perf_at(u: np.ndarray) -> Any:
        values = {p.name: p.from_u(float(x)) for p, x in zip(space, u, strict=True)}
        return type(start).model_validate({**start.model_dump(), **values})

    def scenarios(perf: Any) -> list[spec.Scenario]:
        candidate = _replace_model(start_pool, perf=perf.model_dump())
        return [_scenario(candidate, m, plan, opts.seed) for m, plan in zip(measurements, plans, strict=True)]

    with _Runner(catalog, jobs, catalog_files) as runner:

        def f(u: np.ndarray) -> float:
            return _objective(measurements, runner.run(scenarios(perf_at(u))), fit_metrics)

        u0 = [p.to_u(float(getattr(start, p.name))) for p in space]
        start_preds = runner.run(scenarios(start))
        u_best, f_best, evals = nelder_mead(f, u0, step=step, max_evals=max_evals)
        fitted = perf_at(u_best)
        preds = runner.run(scenarios(fitted))
    return Calibration(
        perf=fitted,
        start=start,
        pool=_replace_model(pool, perf=fitted.model_dump()),
        params=tuple(names),
        points=tuple(PointResult(m, p) for m, p in zip(measurements, preds, strict=True)),
        start_points=tuple(PointResult(m, p) for m, p in zip(measurements, start_preds, strict=True)),
        objective=f_best,
        evaluations=evals + 2,
        metrics=fit_metrics,
    )


# --------------------------------------------------------------------------- perf YAML


def _shared_labels(points: Iterable[PointResult]) -> dict[str, str]:
    keys = ("hardware", "model", "n_gpus", "precision", "engine")
    labels = [p.measurement.labels for p in points]
    out = {}
    for k in keys:
        values = {lab.get(k) for lab in labels}
        if len(values) == 1 and None not in values:
            out[k] = str(values.pop())
    return out


def write_perf_yaml(result: Calibration, path: str | Path, *, measurements_file: str = "") -> Path:
    """Write ``result`` as YAML: ``perf`` (ready to paste under a pool's ``perf:``, or to pass to ``agentsim
    fidelity --perf``), ``deployment`` it was fitted on, ``match`` (labels every calibration row shared, so
    ``fidelity`` applies it to the same hardware and model), ``fit`` (method, coefficients, start, MAPEs) and
    ``residuals`` (measured, predicted and error per point)."""

    def clean(d: Mapping[str, float | None]) -> dict[str, float | None]:
        return {k: (None if v is None else float(f"{v:.6g}")) for k, v in d.items()}

    doc: dict[str, Any] = {
        "perf": result.perf.model_dump(mode="json"),
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
            "start": {p: getattr(result.start, p) for p in result.params},
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
    out = Path(path)
    header = (
        "# Perf model fitted by `agentsim calibrate`: use `perf` as a pool's perf, or `agentsim fidelity --perf`.\n"
    )
    out.write_text(header + yaml.safe_dump(doc, sort_keys=False, width=120), encoding="utf-8")
    return out


PerfAny = spec.RooflinePerf | spec.LinearPerf | spec.TablePerf | spec.CurvePerf


def load_perf_yaml(path: str | Path) -> tuple[PerfAny, dict[str, str]]:
    """A perf spec and its ``match`` labels from a file written by :func:`write_perf_yaml`, or from a plain YAML
    mapping holding just a perf spec (``kind: roofline, mfu: ...``; then ``match`` is empty)."""
    from pydantic import TypeAdapter, ValidationError

    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise CalibrationError(f"{p}: cannot read: {e}") from None
    if not isinstance(doc, Mapping):
        raise CalibrationError(f"{p}: expected a mapping")
    raw = doc.get("perf", doc)
    try:
        perf: PerfAny = TypeAdapter(spec.PerfSpec).validate_python(raw)
    except ValidationError as e:
        raise CalibrationError(f"{p}: not a perf spec: {e}") from None
    match = doc.get("match") or {}
    return perf, {str(k): str(v) for k, v in match.items()} if isinstance(match, Mapping) else {}


def with_perf(pool: spec.PoolSpec, perf: PerfAny) -> spec.PoolSpec:
    """``pool`` with its perf replaced."""
    out: spec.PoolSpec = _replace_model(pool, perf=perf.model_dump())
    return out
