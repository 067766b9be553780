"""Routers: which replica gets a call. Pure logic over the replicas' public state.

Every router has one method, ``pick(call, replicas) -> index``, and is built from its spec by
:func:`make_router`. Load is a replica's *outstanding tokens*: for the calls it holds (queued or running), the
prompt tokens it did not have cached when the call arrived plus the output tokens: a proxy for the work ahead
of a new call that a real router can also observe.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from agentsim import spec
from agentsim.serving.call import Call
from agentsim.serving.replica import Replica


class Router(Protocol):
    """Chooses the replica for a call."""

    def pick(self, call: Call, replicas: Sequence[Replica]) -> int: ...


def _least_load(replicas: Sequence[Replica]) -> int:
    best = 0
    load = replicas[0].outstanding
    for i in range(1, len(replicas)):
        o = replicas[i].outstanding
        if o < load:
            best, load = i, o
    return best


class RoundRobin:
    """Replicas in turn, whatever their load."""

    def __init__(self) -> None:
        self._next = 0

    def pick(self, call: Call, replicas: Sequence[Replica]) -> int:
        i = self._next % len(replicas)
        self._next = i + 1
        return i


class LeastLoad:
    """The replica with the fewest outstanding tokens; ties to the lowest index."""

    def pick(self, call: Call, replicas: Sequence[Replica]) -> int:
        return _least_load(replicas)


class SessionAffinity:
    """A task's calls stay where its first call went (least load at that moment).

    The choice is remembered on the task (``call.owner.affinity``, one entry per replica set: the entry and the
    decode replicas of a disaggregated cluster are chosen separately), so the router holds no per-task state
    that would outlive the task. If that replica stops taking calls (scaled down), the task moves once, to the
    least-loaded replica, and stays there.
    """

    def pick(self, call: Call, replicas: Sequence[Replica]) -> int:
        owner = call.owner
        memory: dict[int, Replica] | None = getattr(owner, "affinity", None)
        if owner is not None and memory is None:
            memory = owner.affinity = {}
        hint = memory.get(id(replicas)) if memory is not None else None
        if hint is not None and hint.accepting:
            i = hint.index  # its position in ``replicas`` too, unless pools interleave or replicas were removed
            if i < len(replicas) and replicas[i] is hint:
                return i
            return replicas.index(hint)
        i = _least_load(replicas)
        if memory is not None:
            memory[id(replicas)] = replicas[i]
        return i


class PrefixAware:
    """The replica holding the longest cached prefix of the call's prompt; ties to the least load, then the
    lowest index. Only replicas within ``balance_tokens`` of the least load compete (see
    :class:`agentsim.spec.PrefixAware`). With no cached prefix anywhere it is least-load."""

    def __init__(self, balance_tokens: int) -> None:
        self.balance = balance_tokens

    def pick(self, call: Call, replicas: Sequence[Replica]) -> int:
        bound = min(r.outstanding for r in replicas) + self.balance
        best = 0
        best_key = (-1, 0)
        for i, r in enumerate(replicas):
            if r.outstanding > bound:
                continue
            key = (r.longest_prefix(call), -r.outstanding)
            if key > best_key:
                best, best_key = i, key
        return best


def make_router(s: spec.RouterSpec) -> Router:
    """The router for a spec."""
    if isinstance(s, spec.RoundRobin):
        return RoundRobin()
    if isinstance(s, spec.LeastLoad):
        return LeastLoad()
    if isinstance(s, spec.SessionAffinity):
        return SessionAffinity()
    return PrefixAware(s.balance_tokens)
