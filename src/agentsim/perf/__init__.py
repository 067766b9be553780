"""Perf models: the duration of one engine step as a function of the batch's shape.

Three kinds, one per ``kind`` of :data:`agentsim.spec.PerfSpec`:

* :class:`RooflinePerfModel` (``roofline``): from the catalog's hardware and model architecture, no
  measurements needed (:mod:`agentsim.perf.roofline` explains the formula);
* :class:`LinearPerfModel` (``linear``): ``alpha + beta*P + gamma*C + delta*D``, for calibration fits and the
  queueing-theory validation;
* :class:`TablePerfModel` (``table``): interpolation over measured steps (inline, a generic CSV, or the
  Splitwise format);
* :class:`CurvePerfModel` (``curve``): output tokens/s vs concurrency, as benchmark sweeps publish it, turned
  into step times (:mod:`agentsim.perf.curve`).

:func:`build_perf` turns a pool's spec into its model. :mod:`agentsim.perf.memory` holds the memory arithmetic
(weights per GPU, KV bytes per token, KV capacity) that the engine and the checks use.
"""

from __future__ import annotations

from agentsim import spec
from agentsim.catalog import Catalog
from agentsim.perf.base import FloatArray, FunctionPerf, PerfModel
from agentsim.perf.curve import CurvePerfModel
from agentsim.perf.linear import LinearPerfModel
from agentsim.perf.memory import (
    DoesNotFitError,
    kv_bytes_per_token,
    kv_capacity_tokens,
    kv_replication,
    weight_bytes_per_gpu,
    weight_placement,
)
from agentsim.perf.roofline import RooflinePerfModel, RooflineTerms
from agentsim.perf.table import PerfFileError, PerfRangeError, TablePerfModel

__all__ = [
    "CurvePerfModel",
    "DoesNotFitError",
    "FloatArray",
    "FunctionPerf",
    "LinearPerfModel",
    "PerfFileError",
    "PerfModel",
    "PerfRangeError",
    "RooflinePerfModel",
    "RooflineTerms",
    "TablePerfModel",
    "build_perf",
    "kv_bytes_per_token",
    "kv_capacity_tokens",
    "kv_replication",
    "weight_bytes_per_gpu",
    "weight_placement",
]


def build_perf(pool: spec.PoolSpec, catalog: Catalog) -> PerfModel:
    """The perf model of one replica of ``pool``.

    Raises :class:`agentsim.catalog.CatalogError` when a roofline or curve pool names hardware or a model the
    catalog does not hold, :class:`PerfFileError` (a ValueError) when a table or curve file cannot be used, and
    ValueError for a deployment the roofline cannot model (expert parallelism of a dense model).
    """
    perf = pool.perf
    dep = pool.deployment
    if isinstance(perf, spec.RooflinePerf):
        return RooflinePerfModel(catalog.get_hardware(dep.hardware), catalog.get_model(dep.model), dep, perf)
    if isinstance(perf, spec.LinearPerf):
        return LinearPerfModel(perf)
    if isinstance(perf, spec.CurvePerf):
        return CurvePerfModel(perf, catalog.get_hardware(dep.hardware), catalog.get_model(dep.model), dep)
    return TablePerfModel(perf)
