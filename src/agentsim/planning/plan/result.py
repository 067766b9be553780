"""What a plan found: one row per candidate deployment, its evaluations and the saved form.

A row's ``status``: ``meets`` (``replicas`` is the fewest that meet every SLO at 95% confidence), ``marginal``
(no count was confidently separated from the targets within the replication cap: the fewest counts that might
meet are reported, flagged), ``dominated`` (its search stopped once its fewest possible replicas cost more than
the answer: it cannot be the cheapest), ``infeasible`` (not even ``max_replicas`` meets, or more replicas stop
helping) or ``skipped`` (cannot run: ``reason``).

The saved plan (``.json``) records everything needed to reproduce and audit it: the scenario (as given, with
its overrides), the SLOs and settings, the seeds, the agentsim version and source digest, and per candidate
every evaluation with its intervals; :meth:`PlanResult.load` reads it back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from agentsim.analysis.accuracy import KEY_METRICS, accuracy_warnings, figures_of, has_figures
from agentsim.files import atomic_path, write_text

Status = Literal["meets", "marginal", "dominated", "infeasible", "skipped"]

COSTS = ("usd_per_hour", "usd_per_mtok_output", "usd_per_task")

RANK_KEYS = {
    "usd_per_hour": ("usd_per_hour", "usd_per_mtok_output"),
    "usd_per_mtok": ("usd_per_mtok_output", "usd_per_hour"),
}
"""The cost fields a plan ranks its candidates by (``rank_by``), the first deciding and the second breaking ties."""


@dataclass
class SloEstimate:
    """One SLO at one replica count: the pooled statistic, its 95% interval and the decision."""

    value: float | None
    lo: float | None
    hi: float | None
    decision: str


@dataclass
class Evaluation:
    """One replica count tried for a candidate: replications, run length, each SLO's estimate, the decision,
    the mean cost and speed figures over the replications."""

    replicas: int
    replications: int
    horizon_s: float
    decision: str
    slos: dict[str, SloEstimate]
    usd_per_hour: float | None = None
    usd_per_mtok_output: float | None = None
    usd_per_task: float | None = None
    tokens_per_s_per_user: float | None = None
    task_p95_s: float | None = None
    output_tokens_per_s: float | None = None
    screening: bool = False
    prompt_per_output: dict[str, float] = field(default_factory=dict)  # per pool, the mean over the replications


@dataclass
class PlanRow:
    """A candidate deployment and what the search found for it (module docstring for ``status``)."""

    label: str
    model: str
    hardware: str
    tp: int
    pp: int
    parallel: str
    precision: str
    kv_precision: str | None
    max_num_seqs: int | None
    preset: str | None
    topology: str
    gpus_per_replica: int
    status: Status
    reason: str | None = None
    lower_bound: int | None = None
    replicas: int | None = None
    gpus: int | None = None
    usd_per_hour: float | None = None
    usd_per_mtok_output: float | None = None
    usd_per_task: float | None = None
    tokens_per_s_per_user: float | None = None
    task_p95_s: float | None = None
    slos: dict[str, SloEstimate] = field(default_factory=dict)
    evaluations: list[Evaluation] = field(default_factory=list)
    engine: dict[str, Any] = field(default_factory=dict)
    """The engine as resolved (preset values filled in, the KV precision that was simulated): what the
    hand-over configurations state."""
    accuracy: list[dict[str, Any]] = field(default_factory=list)
    """What public measurements say of the step times of the pools the search sizes (one entry each, with the
    pool's name under ``pool``: :func:`agentsim.analysis.accuracy.pool_accuracy`)."""

    @property
    def stats(self) -> dict[str, float | None]:
        """Each SLO's pooled statistic at the answer (or at the last count tried)."""
        return {k: v.value for k, v in self.slos.items()}

    @property
    def model_class(self) -> str | None:
        """The class of deployment of its sized pools (``+``-joined when they differ); None when none has one."""
        ids = list(dict.fromkeys(e["class"] for e in self.accuracy if e.get("class")))
        return "+".join(ids) or None

    def model_error(self, metrics: Sequence[str] = KEY_METRICS) -> float | None:
        """The largest of the default roofline's MAPEs of ``metrics`` on its class's public rows (those of its runs'
        regime where they apply: :func:`~agentsim.analysis.accuracy.figures_of`), the worst of its sized pools;
        None when a pool has no such figure (its own numbers, no class, a metric never measured)."""
        worst = 0.0
        for e in self.accuracy:
            if not has_figures(e):
                return None
            mape = figures_of(e).mape_pct
            values = [mape.get(k) for k in metrics]
            if any(v is None for v in values):
                return None
            worst = max(worst, *(float(v) for v in values if v is not None))
        return worst if self.accuracy else None

    @property
    def model_error_pct(self) -> float | None:
        """:meth:`model_error` of throughput and TPOT (the table's ``model_error_pct``)."""
        return self.model_error()


@dataclass
class PlanResult:
    """The ranked candidates (``rows``, best first), the settings, and where the plan came from."""

    slos: dict[str, float]
    attainment: float
    replications: int
    max_replications: int
    max_replicas: int
    seeds: list[int]
    rows: list[PlanRow]
    scenario: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    model: str = ""
    agentsim_version: str = ""
    source_sha256: str = ""
    wall_s: float | None = None
    simulations: int = 0
    warnings: list[dict[str, str]] = field(default_factory=list)
    """What to know before trusting the ranking (:func:`ranking_warnings`)."""

    @property
    def answer(self) -> PlanRow | None:
        """The cheapest candidate that meets every SLO at 95% confidence, if any."""
        return next((r for r in self.rows if r.status == "meets"), None)

    def ranks(self) -> list[int | None]:
        """Each row's rank among the candidates that meet the SLOs (1 is :attr:`answer`), None for the others."""
        out: list[int | None] = []
        rank = 0
        for row in self.rows:
            if row.status == "meets":
                rank += 1
                out.append(rank)
            else:
                out.append(None)
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (infinite values as the strings ``"inf"``, ``"-inf"``)."""
        return _json_safe(asdict(self))  # type: ignore[no-any-return]

    def to_table(self) -> pa.Table:
        """One row per candidate, best first; ``rank`` is null for candidates that do not meet the SLOs. Each SLO
        gets its statistic and interval columns (``<key>``, ``<key>.lo``, ``<key>.hi``)."""
        cols: dict[str, list[Any]] = {k: [] for k in ("rank", "label", "model", "hardware", "tp", "pp", "parallel",
                                                      "precision", "kv_precision", "max_num_seqs", "preset",
                                                      "topology", "gpus_per_replica", "status", "lower_bound",
                                                      "replicas", "gpus", *COSTS, "tokens_per_s_per_user",
                                                      "task_p95_s", "model_class", "model_error_pct")}  # fmt: skip
        for k in self.slos:
            cols[k], cols[f"{k}.lo"], cols[f"{k}.hi"] = [], [], []
        cols["reason"] = []
        cols["rank"] = self.ranks()
        for row in self.rows:
            for k in cols:
                if k in ("rank",) or k in self.slos or k.endswith((".lo", ".hi")):
                    continue
                cols[k].append(getattr(row, k))
            for k in self.slos:
                e = row.slos.get(k)
                cols[k].append(None if e is None else e.value)
                cols[f"{k}.lo"].append(None if e is None else e.lo)
                cols[f"{k}.hi"].append(None if e is None else e.hi)
        ints = ("rank", "tp", "pp", "max_num_seqs", "gpus_per_replica", "lower_bound", "replicas", "gpus")
        floats = (*COSTS, "tokens_per_s_per_user", "task_p95_s", "model_error_pct")
        arrays = {}
        for k, v in cols.items():
            if k in ints:
                arrays[k] = pa.array(v, type=pa.int64())
            elif k in floats or k in self.slos or k.endswith((".lo", ".hi")):
                arrays[k] = pa.array(v, type=pa.float64())
            else:
                arrays[k] = pa.array(v, type=pa.string())
        return pa.table(arrays)

    def save(self, path: str | Path, *, overwrite: bool = True) -> Path:
        """Write the full result (``.json``, reloadable with :meth:`load`) or the table (``.parquet``,
        ``.csv``), atomically."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            write_text(path, json.dumps(self.to_dict(), indent=2) + "\n", overwrite=overwrite)
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            with atomic_path(path, overwrite=overwrite) as tmp:
                pq.write_table(self.to_table(), tmp)
        elif suffix == ".csv":
            import pyarrow.csv as pcsv

            with atomic_path(path, overwrite=overwrite) as tmp:
                pcsv.write_csv(self.to_table(), tmp)
        else:
            raise ValueError(f"{path}: save as .json, .parquet or .csv")
        return path

    @classmethod
    def load(cls, path: str | Path) -> PlanResult:
        """A plan saved as ``.json`` by :meth:`save`."""
        doc = _json_back(json.loads(Path(path).read_text()))
        rows = []
        for r in doc.pop("rows"):
            r["slos"] = {k: SloEstimate(**v) for k, v in r["slos"].items()}
            evs = []
            for e in r.pop("evaluations"):
                e["slos"] = {k: SloEstimate(**v) for k, v in e["slos"].items()}
                evs.append(Evaluation(**e))
            rows.append(PlanRow(**r, evaluations=evs))
        return cls(**doc, rows=rows)


def _json_safe(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "inf" if x > 0 else ("-inf" if x < 0 else None)
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_json_safe(v) for v in x]
    return x


def _json_back(x: Any) -> Any:
    if x == "inf":
        return math.inf
    if x == "-inf":
        return -math.inf
    if isinstance(x, dict):
        return {k: _json_back(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_json_back(v) for v in x]
    return x


def ranking_warnings(
    rows: list[PlanRow], rank_by: str = "usd_per_hour", *, ttft: bool = False, most: int = 5
) -> list[dict[str, str]]:
    """``model_accuracy`` warnings of a ranked plan (``rows`` best first, as :attr:`PlanResult.rows`); ``ttft``:
    an SLO rests on TTFT, whose public-data error then counts too.

    * The answer's sized pools, as a run warns of them (:func:`agentsim.analysis.accuracy.accuracy_warnings`).
    * The ranking: every other candidate that meets the SLOs and runs other hardware, precision or engine preset
      than the answer, and costs more by less than the two step-time models' public-data errors added (errors of
      opposite signs add up), or has an error no public figure bounds: their costs may swap (at most ``most``
      named). Candidates on the answer's hardware, precision and preset differ in parallelism, batch limits or
      topology only: the same kernels and engine, whose errors largely cancel in the comparison."""
    ok = [r for r in rows if r.status == "meets"]
    if not ok:
        return []
    answer = ok[0]
    out = [
        {"code": w["code"], "message": f"answer {answer.label}: {w['message']}"}
        for w in accuracy_warnings({e.get("pool", f"#{i}"): e for i, e in enumerate(answer.accuracy)}, ttft=ttft)
    ]
    metrics = (*KEY_METRICS, "ttft_s") if ttft else KEY_METRICS
    key = RANK_KEYS[rank_by][0]
    a, ea = getattr(answer, key), answer.model_error(metrics)
    close = []
    for r in ok[1:]:
        b, er = getattr(r, key), r.model_error(metrics)
        if (r.hardware, r.precision, r.preset) == (answer.hardware, answer.precision, answer.preset):
            continue
        if a is None or b is None or not a > 0:
            continue
        lead = 100.0 * (b / a - 1.0)
        if ea is None or er is None:
            whose = "its error" if ea is not None else ("the answer's error" if er is not None else "both errors")
            close.append(f"{r.label} ({lead:+.1f}%; {whose} unknown)")
        elif lead < ea + er:
            close.append(f"{r.label} ({lead:+.1f}%; errors {ea:.1f}% + {er:.1f}%)")
    if close:
        named = "; ".join(close[:most]) + (f"; and {len(close) - most} more" if len(close) > most else "")
        out.append({
            "code": "model_accuracy",
            "message": f"the answer {answer.label} ({answer.model_class or 'no class'}) leads candidates of other "
            f"hardware, precision or engine by less than their step-time models' public-data errors added, by "
            f"{key}: {named}. The ranking may not hold; calibrate them on measurements of your own "
            "(agentsim calibrate).",
        })  # fmt: skip
    return out
