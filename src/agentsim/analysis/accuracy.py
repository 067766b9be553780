"""How sure a run's step times are: what public measurements say of the perf model behind each pool.

Every figure a run reports (tokens/s, TTFT, TPOT, $/Mtok) stands on its pools' step times. Where they come from
the default roofline (the catalog's efficiencies and the engine presets), ``docs/FIDELITY.md`` measures how far
they fall from public benchmarks, per class of deployment: dense models on Hopper, Blackwell, AMD, MoE (one CSV
each in ``experiments/fidelity/data``, with their sources). ``catalog/accuracy.yaml`` holds each class's result:
the rows simulated, the hardware, precisions, models and engines they ran, and the mean absolute percentage error
(MAPE) of output tokens/s, TPOT and TTFT. ``experiments/fidelity/run.py --accuracy`` writes those figures and
``tests/test_accuracy.py`` recomputes them, so the file cannot drift from the model it describes.

:func:`pool_accuracy` places one pool:

* ``basis: roofline`` (``mfu`` and ``mbu`` null, the catalog's efficiencies): the first class whose ``moe``
  matches the model (null: either kind) and whose ``hardware`` holds the pool's (an empty list: any hardware).
  ``in_rows`` says whether a public row ran this kind of model on this hardware at this precision; where none
  did, the class's figures are carried over to it (the same architecture family, or for MoE any hardware), and
  the entry's note says so. No class: nothing public was simulated for such a deployment.
* ``roofline-set`` (a roofline with ``mfu`` or ``mbu`` set), ``linear``, ``table``, ``curve``: the scenario's own
  numbers decide the step times, so their accuracy is that of their source (``agentsim calibrate`` reports its
  fit's MAPE on held-out rows); no public figure applies and none is claimed.

:func:`accuracy_warnings` adds a ``model_accuracy`` warning for each default-roofline pool whose class misses
:data:`GOAL_PCT` (issue 14's 15% MAPE) on output tokens/s or TPOT, whose class never measured one of them, or
that no class covers. A run's tokens/s and $/Mtok carry an error of about the class's throughput MAPE (the cost
of a token is the inverse of the throughput), its latencies about the TPOT MAPE.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt

from agentsim.spec.base import Strict
from agentsim.yamlio import loads

if TYPE_CHECKING:
    from agentsim.resolve import ResolvedPool

GOAL_PCT = 15.0
"""The MAPE a class must stay within on output tokens/s and TPOT for its pools to go without a warning."""

METRICS = ("output_tok_s", "tpot_s", "ttft_s")
KEY_METRICS = ("output_tok_s", "tpot_s")
"""The metrics the goal applies to (TTFT at low load is mostly the server's front end, not the engine)."""

METRIC_NAMES = {"output_tok_s": "throughput", "tpot_s": "TPOT", "ttft_s": "TTFT"}


class Measured(Strict):
    """What a class's public rows ran and how far the default roofline fell from them."""

    rows: NonNegativeInt = Field(description="rows simulated")
    hardware: list[str] = Field(description="catalog ids of the hardware the rows ran on")
    precisions: list[str]
    models: list[str] = Field(description="catalog ids of the models")
    kinds: list[Literal["dense", "moe"]] = Field(description="whether the models were dense, MoE or both")
    engines: list[str] = Field(description="engine presets")
    mape_pct: dict[str, NonNegativeFloat | None] = Field(description="MAPE per metric, %; null: never measured")
    n: dict[str, NonNegativeInt] = Field(description="rows that measured each metric")


class AccuracyClass(Strict):
    """One class of deployment and its public-data figures."""

    id: str = Field(min_length=1, description="the group of experiments/fidelity (its data file's name)")
    label: str = Field(min_length=1)
    moe: bool | None = Field(
        description="the class's models route tokens to experts (true) or not (false); null: either"
    )
    hardware: list[str] = Field(
        description="catalog ids the class's figures apply to (its rows' hardware and the same architecture "
        "family); empty: any"
    )
    measured: Measured


class AccuracyTable(Strict):
    """``catalog/accuracy.yaml``: the goal and the classes, in the order they are tried."""

    about: str = Field(min_length=1)
    goal_pct: float = Field(gt=0)
    source: str = Field(min_length=1, description="how the figures were made")
    classes: list[AccuracyClass]


@functools.lru_cache(maxsize=1)
def load_accuracy() -> AccuracyTable:
    """The packaged ``catalog/accuracy.yaml`` (read once)."""
    text = resources.files("agentsim.catalog").joinpath("accuracy.yaml").read_text(encoding="utf-8")
    return AccuracyTable.model_validate(loads(text, "accuracy.yaml"))


def find_class(table: AccuracyTable, hardware: str, moe: bool) -> AccuracyClass | None:
    """The first class of ``table`` for a model that is (or is not) MoE on ``hardware``; None if none."""
    hw = hardware.lower()
    for c in table.classes:
        if (c.moe is None or c.moe == moe) and (not c.hardware or hw in c.hardware):
            return c
    return None


def pool_accuracy(pool: ResolvedPool, table: AccuracyTable | None = None) -> dict[str, Any]:
    """What the public data says of ``pool``'s step times (module docstring): ``basis``, and for a
    default-roofline pool its ``class``, ``label``, ``in_rows``, ``rows``, ``mape_pct`` and ``n``, with a
    ``note`` in words."""
    table = table if table is not None else load_accuracy()
    perf = pool.plan.spec.perf
    d = pool.plan.spec.deployment
    out: dict[str, Any] = {"basis": perf.kind, "class": None}
    if perf.kind != "roofline":
        out["note"] = f"step times from the scenario's {perf.kind} model: as accurate as the data behind it"
        return out
    if perf.mfu is not None or perf.mbu is not None:
        out["basis"] = "roofline-set"
        out["note"] = (
            "the roofline with efficiencies set in the scenario: as accurate as their source (agentsim calibrate "
            "reports its fit's held-out MAPE)"
        )
        return out
    c = find_class(table, d.hardware, pool.model.is_moe)
    kind = "MoE" if pool.model.is_moe else "dense"
    if c is None:
        out["note"] = f"no public measurement of a {kind} model on {d.hardware} was simulated"
        return out
    m = c.measured
    in_rows = d.hardware.lower() in m.hardware and d.precision in m.precisions and kind.lower() in m.kinds
    out.update(
        {"class": c.id, "label": c.label, "in_rows": in_rows, "rows": m.rows, "mape_pct": dict(m.mape_pct),
         "n": dict(m.n)}
    )  # fmt: skip
    where = (
        f"{m.rows} public rows ({', '.join(m.kinds)}; {', '.join(m.hardware)}; {', '.join(m.precisions)}; "
        f"{', '.join(m.engines)})"
    )
    out["note"] = f"{c.label}: {where}" + (
        "" if in_rows else f"; none ran a {kind} model on {d.hardware} at {d.precision}: the class's figures are "
        "carried over"
    )
    return out


def accuracy_warnings(entries: dict[str, dict[str, Any]], goal_pct: float = GOAL_PCT) -> list[dict[str, str]]:
    """``model_accuracy`` warnings (module docstring), one per default-roofline pool of ``entries`` (pool name ->
    :func:`pool_accuracy`) whose class misses ``goal_pct``, lacks a key metric or does not exist."""
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
        mape, n = e["mape_pct"], e["n"]
        missing = [METRIC_NAMES[k] for k in KEY_METRICS if not n.get(k) or mape.get(k) is None]
        over = [f"{METRIC_NAMES[k]} {mape[k]:.1f}%" for k in KEY_METRICS
                if n.get(k) and mape.get(k) is not None and mape[k] > goal_pct]  # fmt: skip
        if not missing and not over:
            continue
        said = []
        if over:
            said.append(f"the default roofline's MAPE was {' and '.join(over)} (the goal: {goal_pct:g}%)")
        if missing:
            said.append(f"{' and '.join(missing)} never measured there")
        out.append({
            "code": "model_accuracy",
            "message": f"pool {pool}: {e['note']}: {'; '.join(said)} (docs/FIDELITY.md). Its tokens/s and $/Mtok "
            "may be off by about the throughput MAPE, its latencies by the TPOT MAPE; calibrate it on "
            "measurements of your own (agentsim calibrate).",
        })  # fmt: skip
    return out


def accuracy_cell(entry: dict[str, Any]) -> str:
    """One line for a summary table: the class's throughput and TPOT MAPE, or what the step times stand on."""
    if entry["basis"] == "roofline-set":
        return "mfu/mbu set: not measured"
    if entry["basis"] != "roofline":
        return f"{entry['basis']}: from your data"
    if entry["class"] is None:
        return "not measured"
    mape = entry["mape_pct"]

    def pct(k: str) -> str:
        v = mape.get(k)
        return "-" if v is None else f"{v:.1f}%"

    star = "" if entry["in_rows"] else "*"
    return f"{pct('output_tok_s')} / {pct('tpot_s')} ({entry['rows']}{star})"
