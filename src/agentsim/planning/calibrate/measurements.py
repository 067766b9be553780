"""Benchmark measurements: what a serving benchmark reported for one condition, read from its result files.

A measurement (:class:`Measurement`) is one condition, an input length ``isl``, an output length ``osl`` and a
load (a fixed number of concurrent requests, a request rate, or "everything queued at once"), with what a client
saw there: output tokens/s, mean TTFT and mean TPOT (any may be missing). :func:`read_measurements` reads

* a generic CSV, one row per condition, header names case-insensitive: ``isl`` (or ``input_len``,
  ``input_tokens``, ``prompt_tokens``), ``osl`` (``output_len``, ``output_tokens``), the load as
  ``concurrency`` (``max_concurrency``) or ``qps`` (``request_rate``, ``rate``) or ``concurrency_or_qps`` (a
  number is a concurrency, ``"2.5 qps"`` a rate, anything with ``offline`` or ``max`` means all requests queued
  at once; no load column also means offline), and any of ``output_tok_s`` (``output_tok_s_total``,
  ``output_tokens_per_s``, ``output_throughput``; or ``output_tok_s_per_gpu`` times ``n_gpus``), ``ttft_ms`` /
  ``ttft_s`` (or ``mean_ttft_ms``), ``tpot_ms`` / ``tpot_s`` (``mean_tpot_ms``, ``itl_ms``), and optionally
  ``num_requests``. Every other column is kept as a *label* (``hardware``, ``model``, ``n_gpus``, ``tp``,
  ``precision``, ``engine``, ``notes``...), used to derive the deployment
  (:func:`agentsim.planning.calibrate.harness.pool_from_labels`) and to group rows
  (:func:`filter_measurements`);
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
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["METRICS", "CalibrationError", "Measurement", "cell_number", "filter_measurements", "read_measurements"]

METRICS = ("output_tok_s", "ttft_s", "tpot_s")
"""The metrics a measurement may carry and the simulator predicts: total output tokens/s of the pool, mean
time to first token and mean time per output token (after the first), in seconds."""


class CalibrationError(ValueError):
    """Measurements or options that cannot be calibrated (unreadable file, no usable rows, ambiguous pool)."""


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

    def __post_init__(self) -> None:
        # A measurement is a positive, finite number: a zero or negative time or rate would make the fit's
        # log error undefined and its MAPE meaningless (an objective of 0 beside a 189% MAPE).
        where = f"{self.source}: " if self.source else ""
        for name in ("isl", "osl", "concurrency", "qps", *METRICS):
            v = getattr(self, name)
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise CalibrationError(f"{where}{name} must be a positive, finite number, got {v!r}")
        if self.num_requests is not None and self.num_requests < 1:
            raise CalibrationError(f"{where}num_requests must be >= 1, got {self.num_requests}")

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


def cell_number(text: str | None) -> float | None:
    """A cell as a number; None when empty, a null marker or not a number."""
    try:
        return _cell(text, "")
    except CalibrationError:
        return None


def _cell(text: str | None, column: str) -> float | None:
    """A cell as a number; None when empty or a null marker (``nan``, ``-``); :class:`CalibrationError` naming
    ``column`` when it holds something else."""
    if text is None:
        return None
    t = text.strip().replace(",", "")
    if not t or t.lower() in ("nan", "none", "null", "-"):
        return None
    try:
        return float(t)
    except ValueError:
        raise CalibrationError(f"{column}: not a number: {text!r}") from None


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
        return _cell(value, f"{origin}: {key}")

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
        per_gpu = _cell(row["output_tok_s_per_gpu"], f"{origin}: output_tok_s_per_gpu")
        gpus = _cell(row.get("n_gpus"), f"{origin}: n_gpus")
        if per_gpu is not None and gpus is not None:
            toks = per_gpu * gpus

    def take_seconds(names: Iterable[tuple[str, float]]) -> float | None:
        for name, scale in names:
            v = _cell(row.get(name), f"{origin}: {name}")
            if v is not None:
                used.add(name)
                return v * scale
        return None

    ttft, tpot = take_seconds(_TTFT), take_seconds(_TPOT)
    nreq = take(_NREQ)
    labels = {k: v for k, v in row.items() if k not in used and v is not None}
    if nreq is not None and nreq != int(nreq):
        raise CalibrationError(f"{origin}: num_requests must be a whole number, got {nreq!r}")
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
        x, y = cell_number(a), cell_number(b)
        return x == y if x is not None and y is not None else a.strip().lower() == b.strip().lower()

    return [m for m in measurements if all(same(m.labels.get(k.lower(), ""), v) for k, v in where.items())]
