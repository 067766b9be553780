"""Mixture-of-experts serving: expert-load imbalance over expert-parallel GPUs, and where the all-to-all goes.

**Imbalance.** Expert parallelism (``ep`` GPUs, each holding ``E / ep`` of a layer's ``E`` routed experts) makes
the step wait for the *busiest* GPU. With ``T`` tokens in a step each routed to ``k`` experts, a GPU receives on
average ``mu = T k / ep`` token copies; the busiest receives ``imbalance * mu`` with::

    imbalance(T, ep) = min(cap, max(1, s + z * sqrt(s / mu)))      cap = ep * min(k, E / ep) / k

two effects added: a *systematic skew* ``s`` (trained routers prefer some experts: with log-normal expert
popularity of sigma 0.8 placed at random, the busiest of ``ep`` GPUs holds ``s`` times the mean,
:data:`SKEW_BY_EP`) and multinomial *noise* that fades as the batch grows (``z`` = expected maximum of ``ep``
standard normals, :data:`Z_BY_EP`). The function and both tables are from the agentsim research notes (Monte
Carlo of uniform routing; sigma 0.8 calibrated so that SGLang's published EPLB gains on DeepSeek-V3, 2.54x
decode at EP72 and 1.49x prefill at EP32 (lmsys.org/blog/2025-05-05-large-scale-ep), and SGLang's LPLB
gains of 5-15% at EP16, are reproduced as the balanced/unbalanced ratio). The formula under-predicts the Monte
Carlo by a few percent at ``mu < 1``; the cap is the load when all of a GPU's experts are hit.

The busiest GPU computes ``imbalance`` times the mean expert FLOPs and, when memory-bound, reads the experts its
``imbalance * T`` token copies touch (METRO, arXiv 2512.09277: decode cost follows activated experts). A
scenario's ``moe_imbalance: 1.0`` is the balanced model; any number is a constant factor (e.g. 1.1 for EPLB
with redundant experts). Without expert parallelism (``ep = 1``) every GPU holds a slice of every expert and
there is no GPU-level imbalance.

**All-to-all placement.** With data-parallel attention each MoE layer dispatches every token to its ``k``
experts and combines the results: per GPU ``2 k act / ep`` bytes per token of the step, of which the share
going to the other GPUs of the scale-up domain (``(D - 1) / ep`` of the copies, ``D = min(ep,
scaleup_domain_gpus)``) crosses NVLink and the share going to other domains (``(ep - D) / ep``) crosses the NIC
(``scaleout_gb_s_per_gpu``): wide EP over 16-32 GPUs of 8-GPU nodes. The two transfers run concurrently
(DeepEP forwards over NVLink while RDMA runs), so the slower sets the time.
"""

from __future__ import annotations

import itertools
import math
from typing import Final, NamedTuple

__all__ = ["SKEW_BY_EP", "Z_BY_EP", "A2aSplit", "ImbalanceCurve", "a2a_split", "imbalance", "imbalance_curve"]

Z_BY_EP: Final = ((1, 0.0), (2, 0.564), (4, 1.029), (8, 1.42), (16, 1.77), (32, 2.07), (64, 2.34), (144, 2.64),
                  (256, 2.83))  # fmt: skip
"""Expected maximum of ``ep`` standard normal variables (``1/sqrt(pi)`` for 2; the rest tabulated by Monte Carlo
in the research notes); interpolated linearly in ``log(ep)``, ``sqrt(2 ln ep)``-like beyond 256."""

SKEW_BY_EP: Final = ((1, 1.0), (8, 1.24), (16, 1.42), (32, 1.87), (64, 2.46), (128, 3.78), (256, 6.7))
"""Busiest-GPU share of a log-normal (sigma 0.8) expert popularity over the mean, placement at random, top-8 of
256 experts (research notes, Monte Carlo); interpolated linearly in ``log(ep)``."""


def _interp_log(table: tuple[tuple[int, float], ...], ep: int) -> float:
    if ep <= table[0][0]:
        return table[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(table):
        if ep <= x1:
            w = math.log(ep / x0) / math.log(x1 / x0)
            return y0 + w * (y1 - y0)
    (x0, y0), (x1, y1) = table[-2], table[-1]
    return y1 + (y1 - y0) * math.log(ep / x1) / math.log(x1 / x0)


class ImbalanceCurve(NamedTuple):
    """``imbalance(T) = min(cap, max(1, skew + noise / sqrt(T)))``: the constants of one deployment."""

    skew: float
    noise: float
    cap: float

    def at(self, tokens: float) -> float:
        """The imbalance of a step with ``tokens`` new tokens."""
        if tokens <= 0.0:
            return 1.0
        return min(self.cap, max(1.0, self.skew + self.noise / math.sqrt(tokens)))


def imbalance_curve(experts: int, experts_per_token: int, ep: int, fixed: float | None = None) -> ImbalanceCurve:
    """The imbalance curve of ``ep`` GPUs sharing ``experts`` routed experts, ``experts_per_token`` per token;
    ``fixed`` (a scenario's ``moe_imbalance``) makes it that constant. ``ep = 1``: always 1 (module docstring)."""
    if fixed is not None:
        return ImbalanceCurve(fixed, 0.0, fixed)
    if ep <= 1 or experts_per_token <= 0:
        return ImbalanceCurve(1.0, 0.0, 1.0)
    s = _interp_log(SKEW_BY_EP, ep)
    z = _interp_log(Z_BY_EP, ep)
    # z sqrt(s / mu) with mu = T k / ep
    noise = z * math.sqrt(s * ep / experts_per_token)
    cap = ep * min(experts_per_token, experts / ep) / experts_per_token
    return ImbalanceCurve(s, noise, max(cap, 1.0))


def imbalance(tokens: float, experts: int, experts_per_token: int, ep: int) -> float:
    """Busiest-GPU over mean expert load for a step of ``tokens`` tokens (module docstring)."""
    return imbalance_curve(experts, experts_per_token, ep).at(tokens)


class A2aSplit(NamedTuple):
    """Fractions of one GPU's dispatched token copies going to other GPUs of its scale-up domain and to GPUs
    in other domains (over the NIC)."""

    scaleup: float
    scaleout: float


def a2a_split(ep: int, scaleup_domain_gpus: int) -> A2aSplit:
    """Where a GPU's ``k`` copies of a token go among ``ep`` GPUs, uniformly: ``(D - 1) / ep`` to the rest of
    its scale-up domain of ``D = min(ep, scaleup_domain_gpus)`` GPUs and ``(ep - D) / ep`` outside it."""
    d = min(ep, scaleup_domain_gpus)
    return A2aSplit((d - 1) / ep, (ep - d) / ep)
