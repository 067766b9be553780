"""Drive one fast-engine replica with a fixed list of calls (open loop), for engine-level tests."""

from __future__ import annotations

from agentsim.engine.clock import Clock
from agentsim.perf.base import PerfModel
from agentsim.serving.admission import EngineConfig
from agentsim.serving.call import Call, Callbacks
from agentsim.serving.replica import Replica
from agentsim.serving.tiers import OffloadPlan


def run_engine(
    arrivals: list[tuple[float, int, int, int | None]],
    perf: PerfModel,
    engine: EngineConfig,
    capacity: int,
    roots: list[tuple[int | None, int]] | None = None,
    until: float | None = None,
    blocks: list[tuple[int, ...] | None] | None = None,
    block_tokens: int = 0,
    ready: list[bool] | None = None,
    stables: list[int] | None = None,
    offload: OffloadPlan | None = None,
    parks: list[bool] | None = None,
) -> tuple[list[Call], Replica]:
    """``arrivals``: (time, prompt, output, parent index). Returns the calls (index = id) and the replica."""
    env = Clock()
    done: list[Call] = []
    rep = Replica(
        env.events, 0, "p", perf, engine, capacity, Callbacks(lambda c, t: None, lambda c, t: done.append(c)),
        offload=offload,
    )
    calls: list[Call] = []
    for i, (t, p, o, parent) in enumerate(arrivals):
        root_key, root_len = roots[i] if roots else (None, 0)
        c = Call(
            i,
            p,
            o,
            t,
            parent=calls[parent] if parent is not None else None,
            root_key=root_key,
            root_len=root_len,
            blocks=blocks[i] if blocks else None,
            block_tokens=block_tokens,
            stable=stables[i] if stables else 0,
        )
        c.park = bool(parks and parks[i])
        calls.append(c)
        ev = env.timeout(t)
        if ready and ready[i]:
            # Arrives from a prefill replica: first token already out, prompt KV ready to store.
            c.generated = 1
            c.first_token_s = t
            ev.callbacks.append(lambda _e, c=c: rep.submit_ready(c))
        else:
            ev.callbacks.append(lambda _e, c=c: rep.submit(c))
    env.run(until)  # simpy timeouts and the engine's events share the clock's one queue
    return calls, rep
