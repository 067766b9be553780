"""Is a difference between two runs real? Batch means (:mod:`agentsim.analysis.batches`) of each run's metrics.

Two runs of a stochastic simulation always differ; ``agentsim compare`` should only call a difference better or
worse when it exceeds what another seed could give. :func:`batch_values` computes, for the comparison's
metrics, one value per batch of each run's measurement window; :func:`~agentsim.analysis.batches.significant`
(Welch's t-test) decides. Metrics not batched here (SLO attainment, energy, counts of rejections) get no
verdict: their difference is shown, never coloured.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pyarrow as pa

from agentsim.analysis.batches import edges as batch_edges
from agentsim.analysis.batches import per_batch, percentile, significant
from agentsim.analysis.rows import call_latencies, col
from agentsim.report.data import RunData, strings

__all__ = ["batch_values", "significant"]


def _counter_rates(run: RunData, edges: np.ndarray, name: str) -> np.ndarray:
    """Per batch: the increase of a replicas counter over all GPU replicas, per second."""
    r = run.replicas
    t = col(r, "t_s")
    pools = strings(r, "pool")
    gpu = pools != "tools"
    totals = np.array([col(r, name)[gpu & (t == e)].sum() for e in edges], dtype=float)
    return np.diff(totals) / np.diff(edges)


def _cost_per_s(run: RunData, edges: np.ndarray) -> np.ndarray:
    """Per batch: provisioned dollars per second (each pool's price per replica-second from pools.parquet)."""
    if run.pools is None:
        return np.full(edges.size - 1, np.nan)
    p = run.pools
    seconds = col(p, "busy_s") + col(p, "idle_s")
    with np.errstate(invalid="ignore", divide="ignore"):
        price = dict(zip(p.column("pool").to_pylist(), col(p, "provisioned_usd") / seconds, strict=True))
    r = run.replicas
    t = col(r, "t_s")
    per = np.array([price.get(x, 0.0) for x in strings(r, "pool")], dtype=float)
    spend = col(r, "provisioned_s") * np.nan_to_num(per)
    totals = np.array([spend[t == e].sum() for e in edges], dtype=float)
    return np.diff(totals) / np.diff(edges)


def batch_values(run: RunData) -> dict[str, np.ndarray]:
    """Per-batch values of the comparison's metrics, keyed by the comparison's labels (``report.compare``)."""
    edges = batch_edges(run.replicas, run.warmup_s, run.horizon_s)
    if edges.size < 3:
        return {}
    c: pa.Table = run.calls
    issue = col(c, "issue_s")
    lat = call_latencies(c)
    start = col(run.tasks, "start_s")
    dur = col(run.tasks, "done_s") - start
    done = ~np.isnan(col(c, "done_s"))

    out: dict[str, np.ndarray] = {
        "TTFT p50 (s)": per_batch(lat["ttft_s"], issue, edges, percentile(50)),
        "TTFT p99 (s)": per_batch(lat["ttft_s"], issue, edges, percentile(99)),
        "TPOT p50 (s)": per_batch(lat["tpot_s"], issue, edges, percentile(50)),
        "TPOT p99 (s)": per_batch(lat["tpot_s"], issue, edges, percentile(99)),
        "call e2e p50 (s)": per_batch(lat["call_e2e_s"], issue, edges, percentile(50)),
        "call e2e p99 (s)": per_batch(lat["call_e2e_s"], issue, edges, percentile(99)),
        "task p50 (s)": per_batch(dur, start, edges, percentile(50)),
        "task p90 (s)": per_batch(dur, start, edges, percentile(90)),
        "calls completed": per_batch(done.astype(float), issue, edges, lambda v: float(v.sum())),
        "tasks completed": per_batch((~np.isnan(dur)).astype(float), start, edges, lambda v: float(v.sum())),
    }
    cached, prompt = col(c, "cached_tokens"), col(c, "prompt_tokens")
    hits = []
    for a, b in pairwise(edges):
        m = (issue >= a) & (issue < b) & done
        hits.append(float(cached[m].sum() / prompt[m].sum()) if prompt[m].sum() else np.nan)
    out["cache hit rate"] = np.asarray(hits)
    if "output_tokens" in run.replicas.column_names:
        tok = _counter_rates(run, edges, "output_tokens")
        processed = tok + _counter_rates(run, edges, "prefill_tokens")
        usd = _cost_per_s(run, edges)
        out["output tokens/s"] = tok
        out["processed tokens/s"] = processed
        with np.errstate(invalid="ignore", divide="ignore"):
            out["$ / Mtok output"] = np.where(tok > 0, usd / tok * 1e6, np.nan)
            out["$ / Mtok processed"] = np.where(processed > 0, usd / processed * 1e6, np.nan)
        out["$ per hour"] = usd * 3600.0
    return out
