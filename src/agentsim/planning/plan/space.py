"""The search space of a plan: which deployments are tried, each built whole before it is validated.

A **candidate** is one way to deploy the model of the base scenario's first pool (the *target pool*): a value
on each axis, applied to the raw scenario data (after the user's ``--set`` overrides), and only then validated
and resolved against the catalog. So a combination is judged whole: ``ep=8`` is valid beside ``tp=8`` even when
the base scenario has ``tp=4``.

=================  ========================================================================================
axis               values tried by default
=================  ========================================================================================
``hardware``       the base pool's hardware
``tp``             1, 2, 4, 8 (those that do not divide the hardware's scale-up domain are skipped)
``pp``             the base pool's
``parallel``       dense models: ``tp``; MoE models: ``tp`` (experts sharded with the layers), ``ep`` (expert
                   parallelism over the tp GPUs) and ``ep-dpa`` (ep plus data-parallel attention)
``precision``      the base pool's weight precision
``kv_precision``   the base pool's KV-cache precision
``max_num_seqs``   the base pool's batch limit (unset: the engine preset's)
``preset``         the base pool's engine preset, when the engine has presets
``topology``       ``aggregated``; ``P:D`` ratios add disaggregated candidates: a prefill pool and a decode pool
                   of the candidate's deployment, the replicas split P:D
=================  ========================================================================================

Each axis is fixed or restricted by the user (:class:`Space`). The replica count searched is the target pool's
(with a topology, the prefill and decode pools' total); other pools of the base scenario are kept as they are.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from agentsim import spec
from agentsim.spec.load import apply_override, validate_data

PARALLEL_MODES = ("tp", "ep", "ep-dpa")


@dataclass(frozen=True)
class Space:
    """The axes of a plan (module docstring). ``None`` on an axis means its default."""

    hardware: Sequence[str] | None = None
    tp: Sequence[int] | None = None
    pp: Sequence[int] | None = None
    parallel: Sequence[str] | None = None
    precision: Sequence[str] | None = None
    kv_precision: Sequence[str | None] | None = None
    max_num_seqs: Sequence[int] | None = None
    preset: Sequence[str] | None = None
    topology: Sequence[str] | None = None


@dataclass(frozen=True)
class Candidate:
    """One deployment to try: the value of every axis, and the raw scenario data it makes (target pool's
    replica count left to :func:`with_replicas`)."""

    hardware: str
    tp: int
    pp: int
    parallel: str
    precision: str
    kv_precision: str | None
    max_num_seqs: int | None
    preset: str | None
    topology: str
    model: str
    data: dict[str, Any] = field(repr=False, compare=False)

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def label(self) -> str:
        """A short name: ``h200 tp8 ep-dpa fp8`` (only the axes that differ from plain are named)."""
        parts = [self.hardware, f"tp{self.tp}"]
        if self.pp > 1:
            parts.append(f"pp{self.pp}")
        if self.parallel != "tp":
            parts.append(self.parallel)
        parts.append(self.precision)
        if self.kv_precision is not None:
            parts.append(f"kv-{self.kv_precision}")
        if self.preset is not None:
            parts.append(self.preset)
        if self.topology != "aggregated":
            parts.append(f"disagg {self.topology}")
        return " ".join(parts)

    def axes(self) -> dict[str, Any]:
        """The axis values, by name."""
        return {
            "model": self.model,
            "hardware": self.hardware,
            "tp": self.tp,
            "pp": self.pp,
            "parallel": self.parallel,
            "precision": self.precision,
            "kv_precision": self.kv_precision,
            "max_num_seqs": self.max_num_seqs,
            "preset": self.preset,
            "topology": self.topology,
        }


def _ratio(topology: str) -> tuple[int, int]:
    p, sep, d = topology.partition(":")
    try:
        pi, di = int(p), int(d)
    except ValueError:
        pi = di = 0
    if not sep or pi < 1 or di < 1:
        raise ValueError(f"topology {topology!r}: expected 'aggregated' or a prefill:decode ratio such as 1:2")
    return pi, di


def split(total: int, topology: str) -> tuple[int, int]:
    """Prefill and decode replicas of a disaggregated candidate with ``total`` replicas (each pool at least one)."""
    p, d = _ratio(topology)
    pre = min(max(1, round(total * p / (p + d))), max(1, total - 1))
    return pre, max(1, total - pre)


def min_total(topology: str) -> int:
    """The fewest replicas a topology can have (a disaggregated one needs a prefill and a decode replica)."""
    return 1 if topology == "aggregated" else 2


def _is_moe(model: str, moe_models: Mapping[str, bool]) -> bool:
    return bool(moe_models.get(model, False))


def candidates(
    base_data: Mapping[str, Any],
    overrides: Sequence[str],
    space: Space,
    moe_models: Mapping[str, bool],
    has_presets: bool,
) -> list[Candidate]:
    """Every combination of the axes, as raw scenario data (not yet validated). ``moe_models`` tells which
    catalog models are mixtures of experts (their ``parallel`` axis defaults to all three modes)."""
    data0 = copy.deepcopy(dict(base_data))
    for o in overrides:
        apply_override(data0, o)
    pool0 = data0.get("cluster", {}).get("pools", [{}])[0]
    dep0 = pool0.get("deployment", {})
    model = str(dep0.get("model", ""))
    engine0 = dep0.get("engine", {}) or {}
    moe = _is_moe(model, moe_models)
    axes: dict[str, list[Any]] = {
        "hardware": list(space.hardware or [dep0.get("hardware", "")]),
        "tp": list(space.tp or [1, 2, 4, 8]),
        "pp": list(space.pp or [int(dep0.get("pp", 1))]),
        "parallel": list(space.parallel or (PARALLEL_MODES if moe else ("tp",))),
        "precision": list(space.precision or [dep0.get("precision", "bf16")]),
        "kv_precision": list(space.kv_precision or [dep0.get("kv_precision")]),
        "max_num_seqs": list(space.max_num_seqs) if space.max_num_seqs else [engine0.get("max_num_seqs")],
        "preset": (list(space.preset) if space.preset else [engine0.get("preset")]) if has_presets else [None],
        "topology": list(space.topology or ["aggregated"]),
    }
    for t in axes["topology"]:
        if t != "aggregated":
            _ratio(t)
    for p in axes["parallel"]:
        if p not in PARALLEL_MODES:
            raise ValueError(f"parallel mode {p!r}: expected one of {', '.join(PARALLEL_MODES)}")
    out: list[Candidate] = []
    for hw, tp, pp, par, prec, kvp, seqs, preset, topo in itertools.product(*axes.values()):
        if par != "tp" and not moe:
            continue  # expert parallelism needs experts
        data = copy.deepcopy(data0)
        pools = data["cluster"]["pools"]
        pool = copy.deepcopy(pools[0])
        dep = pool.setdefault("deployment", {})
        dep.update(hardware=hw, tp=int(tp), pp=int(pp), precision=prec)
        dep["ep"] = 1 if par == "tp" else int(tp)
        dep["data_parallel_attention"] = par == "ep-dpa"
        if kvp is None:
            dep.pop("kv_precision", None)
        else:
            dep["kv_precision"] = kvp
        engine = dep.setdefault("engine", {})
        if seqs is not None:  # None: the engine preset decides
            engine["max_num_seqs"] = int(seqs)
            if engine.get("max_batched_tokens") is not None:
                engine["max_batched_tokens"] = max(int(engine["max_batched_tokens"]), int(seqs))
        if preset is not None:
            engine["preset"] = preset
        pool.pop("autoscale", None)  # the plan searches a fixed count
        if topo == "aggregated":
            pool["role"] = "unified"
            pools[0] = pool
        else:
            name = str(pool.get("name", "pool"))
            pre = dict(copy.deepcopy(pool), name=f"{name}-prefill", role="prefill")
            dec = dict(copy.deepcopy(pool), name=f"{name}-decode", role="decode")
            pools[0:1] = [pre, dec]
        out.append(Candidate(str(hw), int(tp), int(pp), str(par), str(prec), kvp,
                             None if seqs is None else int(seqs), preset, str(topo), model, data))  # fmt: skip
    return out


def with_replicas(c: Candidate, total: int) -> dict[str, Any]:
    """The candidate's raw scenario data with ``total`` replicas in its target pool(s)."""
    data = copy.deepcopy(c.data)
    pools = data["cluster"]["pools"]
    if c.topology == "aggregated":
        pools[0]["replicas"] = int(total)
    else:
        pre, dec = split(total, c.topology)
        pools[0]["replicas"] = pre
        pools[1]["replicas"] = dec
    return data


def validate(c: Candidate, total: int, source: str) -> spec.Scenario:
    """The candidate with ``total`` replicas as a validated scenario (:class:`agentsim.errors.ScenarioError`)."""
    return validate_data(with_replicas(c, total), source)
