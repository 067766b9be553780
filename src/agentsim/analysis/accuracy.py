"""How sure a run's step times are: what public measurements say of the perf model behind each pool.

Every figure a run reports (tokens/s, TTFT, TPOT, $/Mtok) stands on its pools' step times. Where they come from
the default roofline (the packaged catalog's hardware and model figures, the engine presets), ``docs/FIDELITY.md``
measures how far they fall from public benchmarks, per class of deployment: dense models on Hopper, Blackwell,
AMD, MoE on Hopper (one CSV each in ``experiments/fidelity/data``, with their sources). ``catalog/accuracy.yaml``
holds each class's result: the rows simulated, the deployments they ran (kind of model, hardware, precision), the
models and engines, and the mean absolute percentage error (MAPE) of output tokens/s, TPOT and TTFT.
``experiments/fidelity/run.py --accuracy`` writes those figures and ``tests/test_accuracy.py`` recomputes them,
so the file cannot drift from the model it describes.

:func:`pool_accuracy` places one pool, given as resolved and as the scenario wrote it:

* ``basis: roofline``: the default roofline, nothing of its step-time inputs set in the scenario. Its class is the
  first whose ``moe`` matches the model (null: either kind) and whose ``hardware`` holds the pool's. ``in_rows``
  says whether a public row ran this kind of model on this hardware at this precision (one row, all three);
  where none did, the class's figures are carried over to it (the same hardware family), and the entry's note says
  so. No class: nothing public was simulated for such a deployment.
* ``roofline-set``: the roofline with a step-time input of the scenario's own: any field of its ``perf`` away from
  its default (``mfu``, ``mbu``, overheads, kernel latency, collectives, MoE imbalance), a value for one of
  :data:`OWN_ENGINE_FIELDS` (the engine's overheads, kernel latency, front end, speculative decoding with its
  acceptance), or a catalog file replacing the packaged entry of its hardware or model. ``linear``, ``table``,
  ``curve``: the scenario's own step-time model. In all of these the accuracy is that of the numbers' source
  (``agentsim calibrate`` reports its fit's MAPE on held-out rows): no public figure applies and none is claimed.

:func:`accuracy_warnings` adds a ``model_accuracy`` warning for each default-roofline pool whose class misses the
table's ``goal_pct`` (issue 14's 15% MAPE) on output tokens/s or TPOT (and on TTFT when the run has a TTFT
target), whose class never measured one of them, or that no class covers. A run's tokens/s and $/Mtok carry an
error of about the class's throughput MAPE (the cost of a token is the inverse of the throughput), its TPOT and
TTFT about theirs.
"""

from __future__ import annotations

import functools
import math
import os
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from pydantic import Field, NonNegativeFloat, NonNegativeInt, model_validator

from agentsim.catalog import load_catalog
from agentsim.spec import EnginePreset, Precision
from agentsim.spec.base import Strict
from agentsim.yamlio import loads, read_text

if TYPE_CHECKING:
    from agentsim import spec
    from agentsim.resolve import Resolved, ResolvedPool

KEY_METRICS = ("output_tok_s", "tpot_s")
"""The metrics the goal applies to in every run; TTFT joins them where a TTFT target depends on it (at low load
the public rows' TTFT is mostly the servers' front ends, which the default model leaves out)."""

METRIC_NAMES = {"output_tok_s": "throughput", "tpot_s": "TPOT", "ttft_s": "TTFT"}

OWN_ENGINE_FIELDS = ("step_overhead_s", "step_overhead_s_per_seq", "kernel_latency_s", "frontend_s", "speculative")
"""Engine fields whose value, when a scenario gives one, is a step-time (or TTFT) input of its own: the overheads
and kernel latency replace the preset's, the front end adds to TTFT, and speculative decoding brings its own
acceptance rates. Knobs the public rows exercised with the model's own physics (``cuda_graphs``, ``fp8_dequant``,
batch limits, chunking, memory) are not."""


Metric = Literal["output_tok_s", "tpot_s", "ttft_s"]
METRICS: tuple[Metric, ...] = ("output_tok_s", "tpot_s", "ttft_s")
"""The metrics a class's figures cover (the fidelity harness's)."""


Regime = Literal["prompt-heavy", "mixed", "output-heavy"]
REGIMES: tuple[Regime, ...] = ("prompt-heavy", "mixed", "output-heavy")

PROMPT_HEAVY_RATIO = 10.0
"""Prompt tokens computed (not found in the prefix cache) per output token from which a workload, or a public row,
is ``prompt-heavy``: its GPU time goes mostly to prefill. Below :data:`OUTPUT_HEAVY_RATIO` it is ``output-heavy``,
in between ``mixed``. The public rows fall well apart (chat, ShareGPT and long outputs at 0.06-1.8, the
prefill-heavy benchmarks at 16-853, none in between), so a mixed workload gets its class's figures over all rows.
An agentic run with its prefixes cached drifts across as its contexts grow and its cache fills: the built-in
default scenario computes 4.4 prompt tokens per output token in a 5-minute run (after 1 minute of warm-up), 19 in
its hour's window (after its 15-minute warm-up)."""

OUTPUT_HEAVY_RATIO = 3.0
"""Prompt tokens computed per output token below which a workload is ``output-heavy`` (:data:`PROMPT_HEAVY_RATIO`)."""

REGIME_MIN_ROWS = 5
"""Public rows of a regime from which its own figures speak for a run of that regime (fewer: the class's)."""


def tokens_ratio(prompt_tokens: float, output_tokens: float) -> float:
    """Prompt tokens computed per output token: infinite for prompt work without output (a prefill-only pool), 0
    for neither."""
    if output_tokens > 0.0:
        return prompt_tokens / output_tokens
    return math.inf if prompt_tokens > 0.0 else 0.0


def regime_of(prompt_per_output: float) -> Regime:
    """The regime of a workload (or public row) computing ``prompt_per_output`` prompt tokens per output token."""
    if prompt_per_output >= PROMPT_HEAVY_RATIO:
        return "prompt-heavy"
    return "output-heavy" if prompt_per_output < OUTPUT_HEAVY_RATIO else "mixed"


class Figures(Strict):
    """How far the default roofline fell from a set of public rows: their number and the MAPE per metric."""

    rows: NonNegativeInt = Field(description="rows simulated")
    mape_pct: dict[Metric, NonNegativeFloat | None] = Field(description="MAPE per metric, %; null: never measured")
    n: dict[Metric, NonNegativeInt] = Field(description="rows that measured each metric")
    bias_pct: dict[Metric, float | None] = Field(
        default_factory=lambda: dict.fromkeys(METRICS),
        description="mean signed error per metric, % (predicted over measured, less 1): above 0 the model runs high; "
        "null: never measured (or not recorded)",
    )

    @model_validator(mode="after")
    def _every_metric_once(self) -> Figures:
        for name, table in (("mape_pct", self.mape_pct), ("n", self.n), ("bias_pct", self.bias_pct)):
            if set(table) != set(METRICS):
                raise ValueError(f"{name} needs exactly {', '.join(METRICS)}; got {', '.join(sorted(table))}")
        for k in METRICS:
            if (self.mape_pct[k] is None) != (self.n[k] == 0) or self.n[k] > self.rows:
                raise ValueError(
                    f"{k}: a MAPE comes from the rows that measured it, between 1 and rows ({self.rows}), and no MAPE "
                    f"from none; got mape_pct {self.mape_pct[k]} over n {self.n[k]}"
                )
            bias, mape = self.bias_pct[k], self.mape_pct[k]
            if bias is not None and (mape is None or abs(bias) > mape + 0.05):
                raise ValueError(f"{k}: a mean signed error within its MAPE ({mape}); got bias_pct {bias}")
        return self


NO_ROWS = Figures(rows=0, mape_pct=dict.fromkeys(METRICS), n=dict.fromkeys(METRICS, 0))
"""The figures of a regime without public rows."""


class Measured(Figures):
    """What a class's public rows ran and how far the default roofline fell from them, over all its rows and per
    regime (:func:`regime_of` of each row's prompt and output lengths)."""

    deployments: list[tuple[Literal["dense", "moe"], str, Precision]] = Field(
        description="(kind of model, hardware id, precision) of each distinct deployment the rows ran"
    )
    models: list[str] = Field(description="catalog ids of the models")
    engines: list[EnginePreset] = Field(description="engine presets")
    regimes: dict[Regime, Figures] = Field(
        default_factory=dict, description="the same figures over the rows of each regime; every row in one"
    )

    @model_validator(mode="after")
    def _regimes_share_the_rows(self) -> Measured:
        if not self.regimes:
            return self
        parts = list(self.regimes.values())
        if sum(f.rows for f in parts) != self.rows:
            raise ValueError(
                f"regimes: each row is in one regime, so their rows add up to the class's ({self.rows}); got "
                + ", ".join(f"{k} {f.rows}" for k, f in self.regimes.items())
            )
        for k in METRICS:
            n = sum(f.n[k] for f in parts)
            if n != self.n[k]:
                raise ValueError(f"regimes: their {k} rows add up to {n}, not the class's {self.n[k]}")
            for name, whole in (("mape_pct", self.mape_pct[k]), ("bias_pct", self.bias_pct[k])):
                values = [(f.n[k], getattr(f, name)[k]) for f in parts if f.n[k]]
                if whole is None or any(v is None for _, v in values):
                    continue
                # the class's figure is its regimes' weighted by their rows (each rounded to 0.05)
                mean = sum(w * v for w, v in values) / n
                if abs(mean - whole) > 0.051 * (1 + len(values)):
                    raise ValueError(
                        f"regimes: their {k} {name} averages to {mean:.2f} over their rows, not the class's {whole}"
                    )
        return self

    @property
    def hardware(self) -> list[str]:
        """Catalog ids of the hardware the rows ran on."""
        return sorted({h for _, h, _ in self.deployments})

    @property
    def kinds(self) -> list[str]:
        """Whether the rows' models were dense, MoE or both."""
        return sorted({k for k, _, _ in self.deployments})


class AccuracyClass(Strict):
    """One class of deployment and its public-data figures."""

    id: str = Field(min_length=1, description="the group of experiments/fidelity (its data file's name)")
    label: str = Field(min_length=1)
    moe: bool | None = Field(
        description="the class's models route tokens to experts (true) or not (false); null: either"
    )
    hardware: list[str] = Field(
        min_length=1,
        description="catalog ids the class's figures apply to: its rows' hardware and the same architecture family",
    )
    measured: Measured

    @model_validator(mode="after")
    def _rows_inside_the_class(self) -> AccuracyClass:
        outside = [h for h in self.measured.hardware if h not in self.hardware]
        if outside:
            raise ValueError(f"class {self.id}: its rows ran on {', '.join(outside)}, outside its hardware")
        if self.moe is not None and self.measured.kinds not in ([], ["moe" if self.moe else "dense"]):
            raise ValueError(f"class {self.id} (moe: {self.moe}): its rows ran {', '.join(self.measured.kinds)} models")
        return self


class AccuracyTable(Strict):
    """``catalog/accuracy.yaml``: the goal and the classes, in the order they are tried."""

    about: str = Field(min_length=1)
    goal_pct: float = Field(gt=0, le=100, description="the MAPE a class must stay within for its pools to go unwarned")
    source: str = Field(min_length=1, description="how the figures were made")
    classes: list[AccuracyClass]

    @model_validator(mode="after")
    def _known_hardware_and_ids(self) -> AccuracyTable:
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"class ids must be unique; got {', '.join(ids)}")
        catalog = load_catalog()
        for c in self.classes:
            unknown = [h for h in c.hardware if h not in catalog.hardware]
            if unknown:
                raise ValueError(f"class {c.id}: hardware {', '.join(unknown)} not in the catalog")
            unknown = [m for m in c.measured.models if m not in catalog.models]
            if unknown:
                raise ValueError(f"class {c.id}: model {', '.join(unknown)} not in the catalog")
        return self


@functools.lru_cache(maxsize=1)
def load_accuracy() -> AccuracyTable:
    """The packaged ``catalog/accuracy.yaml`` (read once)."""
    text = resources.files("agentsim.catalog").joinpath("accuracy.yaml").read_text(encoding="utf-8")
    return AccuracyTable.model_validate(loads(text, "accuracy.yaml"))


def read_accuracy(path: str | os.PathLike[str]) -> AccuracyTable:
    """An accuracy table from the file ``path`` (the fidelity experiment rewrites the source tree's copy):
    :class:`agentsim.yamlio.TextFileError` naming the file when it cannot be read."""
    return AccuracyTable.model_validate(loads(read_text(path), os.fspath(path)))


def find_class(table: AccuracyTable, hardware: str, moe: bool) -> AccuracyClass | None:
    """The first class of ``table`` for a model that is (or is not) MoE on ``hardware``; None if none."""
    hw = hardware.lower()
    for c in table.classes:
        if (c.moe is None or c.moe == moe) and hw in c.hardware:
            return c
    return None


def own_inputs(pool: ResolvedPool, given: spec.PoolSpec) -> list[str]:
    """The step-time inputs of ``pool`` that its scenario sets itself (``given``: the pool as written), by name;
    empty for the default roofline on the packaged catalog."""
    perf = given.perf
    if perf.kind != "roofline":
        return [f"perf.kind {perf.kind}"]
    # values, not the fields a file named: a scenario dumped and validated again (--seed, --set, a sweep point)
    # names every field, at its default
    out = [f"perf.{k}" for k in sorted(perf.model_dump(exclude_defaults=True)) if k != "kind"]
    engine = given.deployment.engine
    out += [f"engine.{k}" for k in OWN_ENGINE_FIELDS if getattr(engine, k) is not None]
    packaged = load_catalog()
    d = given.deployment
    if packaged.hardware.get(d.hardware.lower()) != pool.hardware:
        out.append(f"catalog hardware {d.hardware}")
    if packaged.models.get(d.model.lower()) != pool.model:
        out.append(f"catalog model {d.model}")
    return out


def pool_accuracy(
    pool: ResolvedPool,
    given: spec.PoolSpec,
    table: AccuracyTable | None = None,
    prompt_per_output: float | None = None,
) -> dict[str, Any]:
    """What the public data says of ``pool``'s step times (module docstring): ``basis``, ``class``, and for a
    default-roofline pool with a class its ``label``, ``in_rows``, ``rows``, ``mape_pct`` and ``n``; a ``note``
    in words. ``given`` is the pool as the scenario wrote it (the resolved spec has the presets filled in). With
    the pool's ``prompt_per_output`` (a run's: :func:`prompt_per_output`), a ``regime`` entry: its name, that
    ratio, and the class's figures over the public rows of that regime (``rows``, ``mape_pct``, ``n``), which
    ``applies`` from :data:`REGIME_MIN_ROWS` rows on (:func:`figures_of`)."""
    table = table if table is not None else load_accuracy()
    d = given.deployment
    own = own_inputs(pool, given)
    if own:
        basis = given.perf.kind if given.perf.kind != "roofline" else "roofline-set"
        return {"basis": basis, "class": None,
                "note": f"step-time inputs of the scenario's own ({', '.join(own)}): as accurate as their source "
                "(agentsim calibrate reports its fit's held-out MAPE); no public figure is claimed"}  # fmt: skip
    out: dict[str, Any] = {"basis": "roofline", "class": None}
    kind: Literal["dense", "moe"] = "moe" if pool.model.is_moe else "dense"
    c = find_class(table, d.hardware, pool.model.is_moe)
    if c is None:
        out["note"] = f"no public measurement of a {kind} model on {d.hardware} was simulated"
        return out
    m = c.measured
    in_rows = (kind, d.hardware.lower(), d.precision) in m.deployments
    out.update(
        {"class": c.id, "label": c.label, "in_rows": in_rows, **m.model_dump(include=set(Figures.model_fields))}
    )  # fmt: skip
    ran = "; ".join(f"{k} on {h} at {p}" for k, h, p in m.deployments)
    out["note"] = f"{c.label}: {m.rows} public rows ({ran}; {', '.join(m.engines)})" + (
        ""
        if in_rows
        else f"; none ran a {kind} model on {d.hardware} at {d.precision}: the class's figures are carried over"
    )
    return with_regime(out, prompt_per_output, table)


def with_regime(
    entry: dict[str, Any], prompt_per_output: float | None, table: AccuracyTable | None = None
) -> dict[str, Any]:
    """``entry`` (a :func:`pool_accuracy`) with the ``regime`` of a run that computed ``prompt_per_output`` prompt
    tokens per output token: its name, that ratio, and the class's figures over its public rows of that regime,
    which ``applies`` from :data:`REGIME_MIN_ROWS` rows on; ``entry`` as it is without a ratio, without public
    figures, or where the class has no regimes."""
    if prompt_per_output is None or not has_figures(entry):
        return entry
    table = table if table is not None else load_accuracy()
    (c,) = [c for c in table.classes if c.id == entry["class"]]
    if not c.measured.regimes:
        return entry
    name = regime_of(prompt_per_output)
    f = c.measured.regimes.get(name) or NO_ROWS
    # JSON has no infinity: a pool that only prefills keeps its regime and a null ratio
    ratio = None if math.isinf(prompt_per_output) else round(prompt_per_output, 2)
    regime = {"name": name, "prompt_per_output": ratio, **f.model_dump(), "applies": f.rows >= REGIME_MIN_ROWS}
    return {**{k: v for k, v in entry.items() if k not in ("regime", "note")}, "regime": regime, "note": entry["note"]}


def ttft_target_of(slo: spec.Slo) -> bool:
    """Whether a workload's SLO has a TTFT target (per call or on the p99), whose verdict rests on TTFT."""
    return slo.ttft_s is not None or slo.ttft_p99_s is not None


def resolved_accuracy(
    resolved: Resolved, prompt_per_output: dict[str, float] | None = None
) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Each pool's :func:`pool_accuracy` (by pool name, against the pool as the scenario wrote it; with a run's
    ``prompt_per_output`` by pool, its regime) and the :func:`accuracy_warnings` a run of ``resolved`` gives of
    them (TTFT counted where a workload targets it)."""
    table = load_accuracy()
    given = {p.name: p for p in resolved.scenario.cluster.pools}
    ratios = prompt_per_output or {}
    entries = {p.name: pool_accuracy(p, given[p.name], table, ratios.get(p.name)) for p in resolved.pools}
    ttft = any(ttft_target_of(w.slo) for w in resolved.scenario.workload)
    return entries, accuracy_warnings(entries, ttft=ttft, goal_pct=table.goal_pct)


def prompt_per_output(calls: Any, since_s: float = 0.0) -> dict[str, float]:
    """Per pool, the prompt tokens it computed (``prompt_tokens - cached_tokens`` of the calls whose prefill it
    finished: the prefill pool of a handed-off call, else its pool; a call still waiting or prefilling at the horizon
    has computed none of it yet) per output token it generated (``generated_tokens`` of the calls on it), over the
    calls of a run's ``calls`` table issued from ``since_s`` on (the summary's window: ``warmup_s``)
    (:func:`tokens_ratio`: infinite for a pool that only prefills); absent for a pool that did neither. Read a batch
    at a time, as the summary's own sums (:func:`agentsim.analysis.rows.in_window`)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from agentsim.analysis.rows import codes, col, in_window

    prompts: dict[str, float] = {}
    outputs: dict[str, float] = {}
    names = ["pool", "prefill_pool", "prompt_tokens", "cached_tokens", "generated_tokens", "first_token_s"]
    for b in in_window(calls, names, "issue_s", since_s):
        computed = np.where(np.isnan(col(b, "first_token_s")), 0.0, col(b, "prompt_tokens") - col(b, "cached_tokens"))
        generated = col(b, "generated_tokens")
        pool = b.column("pool")
        for sums, at, amounts in ((prompts, pc.coalesce(b.column("prefill_pool"), pool), computed),
                                  (outputs, pool, generated)):  # fmt: skip
            code, keys = codes(pa.table({"pool": at}), "pool")  # null (never routed): the code len(keys)
            totals = np.bincount(code, weights=amounts, minlength=len(keys) + 1)
            for i, name in enumerate(keys):
                sums[name] = sums.get(name, 0.0) + float(totals[i])
    out: dict[str, float] = {}
    for name in sorted(prompts.keys() | outputs.keys()):
        p, o = prompts.get(name, 0.0), outputs.get(name, 0.0)
        if p > 0.0 or o > 0.0:
            out[name] = tokens_ratio(p, o)
    return out


def has_figures(entry: dict[str, Any]) -> bool:
    """Whether public figures speak for a pool's entry: the default roofline, and a class that covers it."""
    return entry.get("basis") == "roofline" and entry.get("class") is not None


class Applicable(NamedTuple):
    """The public figures that speak for a pool (:func:`figures_of`)."""

    over: str  # what they are over, in words
    label: str  # their rows, short: "19 prompt-heavy", "72"
    mape_pct: dict[str, Any]
    n: dict[str, Any]
    bias_pct: dict[str, Any]


REGIME_BOUNDS = {
    "prompt-heavy": f">= {PROMPT_HEAVY_RATIO:g}",
    "mixed": f"{OUTPUT_HEAVY_RATIO:g}-{PROMPT_HEAVY_RATIO:g}",
    "output-heavy": f"< {OUTPUT_HEAVY_RATIO:g}",
}
"""Each regime's range of prompt tokens computed per output token, as the warnings and the report say it."""


def figures_of(entry: dict[str, Any]) -> Applicable:
    """The figures that speak for a default-roofline pool with a class: its regime's where the entry has one that
    ``applies``, else its class's."""
    regime = entry.get("regime")
    if regime is not None and regime["applies"]:
        ratio = regime["prompt_per_output"]
        own = "it only prefills" if ratio is None else f"this pool {ratio:g}"
        said = (
            f"{regime['rows']} {regime['name']} rows ({REGIME_BOUNDS[regime['name']]} prompt tokens computed per "
            f"output token; {own})"
        )
        label = f"{regime['rows']} {regime['name']}"
        return Applicable(said, label, regime["mape_pct"], regime["n"], regime.get("bias_pct") or {})
    bias = entry.get("bias_pct") or {}
    return Applicable(f"{entry['rows']} rows", str(entry["rows"]), entry["mape_pct"], entry["n"], bias)


BIAS_SAID_PCT = 5.0
"""A mean signed error the warnings put in words from (smaller: no lean worth a planner's notice)."""


def bias_text(bias_pct: float | None) -> str:
    """Which way a throughput error leans, in words ('' when not recorded or within :data:`BIAS_SAID_PCT`)."""
    if bias_pct is None or abs(bias_pct) < BIAS_SAID_PCT:
        return ""
    high = bias_pct > 0
    lean = "high: its tokens/s too high, $/Mtok too low" if high else "low: its tokens/s too low, $/Mtok too high"
    return f"; on average the model ran {bias_pct:+.0f}% {lean}"


def mape_text(value: float | None, missing: str = "-") -> str:
    """A MAPE as shown to a reader (one decimal, percent), ``missing`` where the class never measured it."""
    return missing if value is None else f"{value:.1f}%"


def accuracy_warnings(
    entries: dict[str, dict[str, Any]], *, ttft: bool = False, goal_pct: float | None = None
) -> list[dict[str, str]]:
    """``model_accuracy`` warnings (module docstring), one per default-roofline pool of ``entries`` (pool name ->
    :func:`pool_accuracy`) whose class misses ``goal_pct`` (default: the packaged table's), lacks a key metric
    (TTFT too with ``ttft``: a TTFT target depends on it) or does not exist."""
    goal = goal_pct if goal_pct is not None else load_accuracy().goal_pct
    metrics = (*KEY_METRICS, "ttft_s") if ttft else KEY_METRICS
    out = []
    for pool, e in entries.items():
        if e["basis"] != "roofline":
            continue
        if e["class"] is None:
            out.append({
                "code": "model_accuracy",
                "message": f"pool {pool}: {e['note']}: nothing says how close its step times, latencies and "
                "$/Mtok are; calibrate it on measurements of your own (agentsim calibrate).",
            })  # fmt: skip
            continue
        over_rows, _, mape, n, bias = figures_of(e)
        missing = [METRIC_NAMES[k] for k in metrics if not n.get(k) or mape.get(k) is None]
        over = [f"{METRIC_NAMES[k]} {mape[k]:.1f}%" for k in metrics
                if n.get(k) and mape.get(k) is not None and mape[k] > goal]  # fmt: skip
        if not missing and not over:
            continue
        said = []
        if over:
            said.append(f"on its {over_rows} the default model's MAPE was {' and '.join(over)}, past the {goal:g}% "
                        "goal")
        if missing:
            said.append(f"{' and '.join(missing)} never measured on its {over_rows}")
        out.append({
            "code": "model_accuracy",
            "message": f"pool {pool}: {e['note']}; {'; '.join(said)} (docs/FIDELITY.md). Its tokens/s and $/Mtok "
            f"may be off by about the throughput MAPE ({mape_text(mape['output_tok_s'], 'no figure')}"
            f"{bias_text(bias.get('output_tok_s'))}), its TPOT and "
            f"TTFT by theirs ({mape_text(mape['tpot_s'], 'no figure')}, {mape_text(mape['ttft_s'], 'no figure')}); "
            "calibrate it on measurements of your own "
            "(agentsim calibrate).",
        })  # fmt: skip
    return out


def accuracy_cell(entry: dict[str, Any]) -> str:
    """One line for a summary table: the class's throughput and TPOT MAPE, or what the step times stand on."""
    if entry["basis"] == "roofline-set":
        return "own inputs: not measured"
    if entry["basis"] != "roofline":
        return f"{entry['basis']}: from your data"
    if not has_figures(entry):
        return "not measured"
    figures = figures_of(entry)
    star = "" if entry["in_rows"] else "*"
    mape = figures.mape_pct
    return f"{mape_text(mape.get('output_tok_s'))} / {mape_text(mape.get('tpot_s'))} ({figures.label}{star})"
