"""Perf models: the duration of one engine step as a function of the batch's shape.

Three kinds, one per ``kind`` of :data:`agentsim.spec.PerfSpec`:

* :class:`RooflinePerfModel` (``roofline``): from the catalog's hardware and model architecture, no
  measurements needed (:mod:`agentsim.perf.roofline` explains the formula);
* :class:`LinearPerfModel` (``linear``): ``alpha + beta*P + gamma*C + delta*D``, for calibration fits and the
  queueing-theory validation;
* :class:`TablePerfModel` (``table``): interpolation over measured steps.

:func:`build_perf` turns a pool's spec into its model. :mod:`agentsim.perf.memory` holds the memory arithmetic
(weights per GPU, KV bytes per token, KV capacity) that the engine and the checks use.
"""

from __future__ import annotations

from agentsim import spec
from agentsim.catalog import Catalog
from agentsim.perf.base import FloatArray, FunctionPerf, PerfModel
from agentsim.perf.linear import LinearPerfModel
from agentsim.perf.memory import (
    DoesNotFitError,
    kv_bytes_per_token,
    kv_capacity_tokens,
    kv_replication,
    weight_bytes_per_gpu,
)
from agentsim.perf.roofline import RooflinePerfModel, RooflineTerms
from agentsim.perf.table import PerfRangeError, TablePerfModel

__all__ = [
    "DoesNotFitError",
    "FloatArray",
    "FunctionPerf",
    "LinearPerfModel",
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
]


def build_perf(pool: spec.PoolSpec, catalog: Catalog) -> PerfModel:
    """The perf model of one replica of ``pool``.

    Raises :class:`agentsim.catalog.CatalogError` when a roofline pool names hardware or a model the catalog
    does not hold.
    """
    perf = pool.perf
    if isinstance(perf, spec.RooflinePerf):
        dep = pool.deployment
        return RooflinePerfModel(catalog.get_hardware(dep.hardware), catalog.get_model(dep.model), dep, perf)
    if isinstance(perf, spec.LinearPerf):
        return LinearPerfModel(perf)
    return TablePerfModel(perf)
