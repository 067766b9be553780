"""The continuous-batching engine of one replica, with event skipping.

**The model** (vLLM's scheduler; the admission policy is the engine preset's, :mod:`agentsim.serving.admission`).
A replica holds a *running* set (in admission order) and a FCFS *waiting* queue. At every step boundary it

1. makes KV room for this step's decode tokens (one per decoding call): evict unreferenced prefix-cache leaves,
   least recently used first, then preempt the newest running call (recompute: its KV is dropped and it goes back
   to the front of the queue, keeping the tokens it already generated). Under guaranteed-no-evict this never
   happens: admission reserved every future decode token;
2. admits KV-ready calls (disaggregated decode) into the decode batch, FCFS from the queue's head;
3. fills the token budget ``max_batched_tokens``: one token per decoding call, then the pending prefill chunks of
   running calls in admission order, then admits waiting calls (FCFS, stop at the first that does not fit) while
   ``max_num_seqs``, the budget and free KV allow. An admitted call looks up its longest cached prefix, pins it,
   and reserves KV for the rest of its prompt, plus what its policy holds back (guaranteed-no-evict: its own and
   every running call's future decode tokens; new-token-ratio: its clipped output and the ratio's share of the
   running calls'). With ``chunked_prefill`` a long prompt is split across steps; under data-parallel attention
   (``EngineConfig.attention_ranks``) each rank schedules its share of the budget, so a call's chunk is at most
   ``max_batched_tokens / ranks``, and the step is timed from its largest chunk (the busiest rank's, perf
   roofline). Under vLLM a model with
   sliding-window layers (gpt-oss) also holds a window's blocks per admitted call, from admission until its KV
   is freed (``EngineConfig.window_charge``), a constant per call, so the decode-room arithmetic below holds;
4. runs one step of ``perf.step_time(prefill_tokens, decode_seqs, context_tokens)`` seconds, or a segment.

SGLang's loop (new-token-ratio, :meth:`Replica._plan_prefill_first`) orders it differently: a prefill batch
(pending chunks, then admissions, the budget all for prompts) runs alone while the decodes wait; only when none
can be formed does the decode batch run, after making its KV room by evicting, then retracting the call with the
fewest generated tokens. The decodes' step counter and busy share do not move during a prefill batch.

A call's first token comes at the end of the step that completes its prefill (that is its TTFT); each later step
gives one more token, so a call of ``o`` output tokens finishes ``o - 1`` decode steps after its prefill. When its
prefill completes, its block-aligned prompt becomes a prefix-cache node that the next step of the same agent
finds.

**Event skipping** (why this is fast and still exact). Between events, a decode-only batch keeps its
composition: nothing is admitted (the queue is empty, or its head was refused and stays refused because KV only
shrinks and the batch does not change; under guaranteed-no-evict decode tokens come out of the reserve, so free
KV minus the reserve stays put), nothing finishes and KV does not run out. The engine therefore runs
``k`` steps as one *segment*: ``k = min(steps to the next completion, free KV // decode_seqs)`` (one step while a
call waits under new-token-ratio, whose reserve shrinks as the ratio decays). The state per
event is O(1): a replica step counter ``S``; a decoding call that started decoding at step ``s0`` with ``kv0``
tokens holds ``kv0 + (S - s0)``, so the batch's context is ``Q + B*S`` with ``Q = sum(kv0 - s0)`` kept
incrementally, and completions come off a min-heap of finishing steps. Each call's share of the busy time is an
accumulator difference (every decoding call takes one token of every step). An arrival into an empty queue cuts
the segment at the next step boundary, where it is considered exactly as a step-by-step engine would.

A plain step-by-step engine in ``tests/reference_engine.py`` must give the same timings to 1e-9 s.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from typing import Final, cast

import numpy as np

from agentsim.engine.events import Event, EventQueue
from agentsim.engine.minheap import Keyed, pop, push
from agentsim.perf.base import PerfModel
from agentsim.serving.admission import (
    FCFS_PREEMPT,
    NEW_TOKEN_RATIO,
    NO_EVICT,
    RESERVE_CLIP_TOKENS,
    EngineConfig,
    clipped_future,
    ratio_reserve,
    reset_ratio,
    retract_victim,
)
from agentsim.serving.call import DECODE, DONE, LOADING, PREFILL, WAITING, Call, CallListener, ReplicaId
from agentsim.serving.kvcache import KvCache, Node
from agentsim.serving.prefix import cache_prompt, chain_keys, find
from agentsim.serving.tiers import NONE, ON_TOOL_WAIT, OffloadPlan, Tiers

# Replica states between events.
IDLE: Final = 0
STARTING: Final = 1
STEP: Final = 2
SEGMENT: Final = 3

MAX_SEGMENT_STEPS: Final = 8192  # bounds the step-time array of one segment; a segment ending early is harmless
SCALAR_SEGMENT_STEPS: Final = 12  # below this, step times are summed in Python rather than numpy


class Finish(Keyed):
    """A decoding call's entry in the completion heap: it finishes at step ``step`` (the key ``t``, as a float:
    exact below 2**53 steps), ties broken by call id (``seq``). Stale once the call's ``epoch`` moved on
    (it was preempted; its re-admission pushed a new entry)."""

    __slots__ = ("call", "epoch", "step")

    def __init__(self, step: int, call: Call) -> None:
        super().__init__(float(step), call.id)
        self.step = step
        self.epoch = call.epoch
        self.call = call


class Timer(Event):
    """The end of a replica's current step or segment. A replica re-arms rather than cancels: a timer whose
    generation is no longer the replica's is ignored when it fires (lazy cancellation)."""

    __slots__ = ("gen", "replica")

    def __init__(self, replica: Replica, gen: int) -> None:
        super().__init__(0.0, 0)
        self.replica = replica
        self.gen = gen

    def fire(self) -> None:
        self.replica._fire(self.gen)


class Loaded(Event):
    """The reload of an admitted call's prefix from a lower KV tier has ended (stale if the call was preempted
    meanwhile: its ``epoch`` moved on)."""

    __slots__ = ("call", "epoch", "replica")

    def __init__(self, replica: Replica, call: Call) -> None:
        super().__init__(0.0, 0)
        self.replica = replica
        self.call = call
        self.epoch = call.epoch

    def fire(self) -> None:
        self.replica._loaded(self.call, self.epoch)


class CallTooLarge(Exception):
    """A call whose prompt plus output can never fit the replica's KV capacity."""


class Replica(ReplicaId):
    """One running copy of a deployment: its batch, its KV cache, its clock.

    ``listener`` is told of each call's first token and completion (:class:`~agentsim.serving.call.CallListener`)
    so the agent layer can move on.
    """

    def __init__(
        self,
        clock: EventQueue,
        index: int,
        pool: str,
        perf: PerfModel,
        engine: EngineConfig,
        kv_capacity_tokens: int,
        listener: CallListener,
        role: str = "unified",
        on_prefilled: Callable[[Call, float], None] | None = None,
        offload: OffloadPlan | None = None,
    ) -> None:
        super().__init__(pool, index)
        self.clock = clock  # the hot path schedules and reads the time here
        self.role = role
        self.on_prefilled = on_prefilled
        self.accepting = True  # False while draining (autoscaler) or not yet started (cold start)
        self.status = "active"  # starting (cold start) | active | draining | removed
        self.created_s = clock.now  # provisioned (and paid for) from here ...
        self.removed_s: float | None = None  # ... to here
        self.on_drained: Callable[[Replica, float], None] | None = None  # told when a draining replica empties
        self.perf = perf
        self.max_seqs = engine.max_num_seqs
        self.budget = engine.max_batched_tokens
        self.chunked = engine.chunked_prefill
        # Under data-parallel attention each rank schedules its own share of the budget: a call's chunk is at most
        # budget / ranks (SGLang divides --chunked-prefill-size by dp_size; TensorRT-LLM's max_num_tokens is per rank)
        self.rank_budget = max(1, self.budget // engine.attention_ranks)
        self.windowed = engine.window_blocks > 0  # calls hold KV for sliding-window layers (vLLM, gpt-oss)
        self.kv = KvCache(kv_capacity_tokens, engine.block_size_tokens, engine.prefix_caching)
        # KV offload (serving/tiers.py): evicted prefixes go to host DRAM / NVMe and are reloaded from there.
        self.tiers: Tiers | None = None
        self.park_tools = False
        if offload is not None and offload.policy != NONE and engine.prefix_caching:
            self.tiers = Tiers(offload)
            self.kv.lower = self.tiers
            self.park_tools = offload.policy == ON_TOOL_WAIT
        self.loading = 0  # admitted calls waiting for their prefix's reload
        self.reloads_now = 0  # reloads admitted at this step boundary
        self.config = engine
        self.admission = engine.admission
        self.listener = listener

        self.waiting: deque[Call] = deque()
        # Admission order. Keyed by the call itself: deletion then matches by identity, without reading an id
        # object that has long left the caches.
        self.running: dict[Call, None] = {}
        self.prefilling: list[Call] = []  # running calls still computing their prompt, admission order
        self.heap: list[Keyed] = []  # Finish entries: decoding calls by finishing step
        self.decoding = 0  # B
        self.q = 0  # sum over decoding calls of (kv0 - s0)
        self.step = 0  # S: steps executed so far
        self.acc = 0.0  # sum over steps of step_s / tokens_in_step: busy seconds per token slot
        self.accm = 0.0  # the same over steps that compute prompt tokens only (they draw more power)
        # Running sums the admission policies read (serving/admission.py), kept in O(1) per event.
        self.fin_sum = 0  # sum over decoding calls of their finishing step
        self.pf_left = 0  # sum over prefilling calls of the tokens they still have to generate
        self.long_calls = 0  # running calls of more than RESERVE_CLIP_TOKENS output tokens
        self.ratio0 = engine.init_new_token_ratio  # SGLang's new-token ratio when last set ...
        self.ratio_steps = 0  # ... and the decode steps since
        self.seg_retracted = 0  # 1 if the current decode step or segment began with a retraction
        self.ratio_hold = 0  # tokens held back for running calls' future output (this step's admissions)

        self.state = IDLE
        self.gen = 0  # timer generation: a timer whose generation is stale is ignored (lazy cancel)
        self.t0 = 0.0  # start of the current step or segment
        self.seg_k = 0
        self.seg_c0 = 0.0  # batch context at the segment's first step
        self.seg_total = 0.0  # its duration, when the perf model has a closed form for it
        self._seg_cum: np.ndarray | list[float] | None = None  # step end times, built only when needed
        self.cur_p = 0  # prefill tokens of the current step
        self.cur_d = 0  # decode seqs of the current step
        self.pf_pairs = 0.0  # sum over the prefill chunks being filled of chunk * (context + chunk / 2)
        self.pf_big = 0  # their largest chunk
        self.pf_big_pairs = 0.0  # their largest chunk * (context + chunk / 2)
        self.pf_big_ctx = 0  # their largest cached prefix

        # Counters for the time series and the summary.
        self.busy_s = 0.0
        self.busy_prefill_s = 0.0  # of which in steps that computed prompt tokens
        self.out_tokens = 0  # output tokens generated
        self.prefill_tokens = 0  # prompt tokens computed (recomputes included)
        self.outstanding = 0  # router load: prompt not cached on arrival + output, of calls in the replica
        self.steps_skipped = 0
        self.steps_run = 0  # steps executed, each paying the step's fixed cost (decodes waiting or not)
        self.preemptions = 0
        self.holding = 0  # calls handed off whose KV is still being sent (prefill role)
        self.incoming = 0  # calls routed here still in the server's front end (arrive)
        self.frontend_s = engine.frontend_s

    # ================================================================== entry points
    def submit(self, call: Call) -> None:
        """A call arrives at the current simulated time; it joins the queue."""
        win = self._window(call)
        if call.prompt + call.output + win > self.kv.capacity:
            held = f" + {win} held for sliding-window layers" if win else ""
            raise CallTooLarge(
                f"call of {call.prompt} prompt + {call.output} output tokens{held} exceeds the KV capacity "
                f"of {self.kv.capacity} tokens of replica {self.pool}[{self.index}]"
            )
        call.replica = self
        call.load = call.prompt - self.longest_prefix(call) + call.output
        self.outstanding += call.load
        self.waiting.append(call)
        self._wake()

    def arrive(self, call: Call) -> None:
        """A call routed here: it joins the queue after the server's front end (``frontend_s``; at once without
        one). Routed now, it counts in the router's load from now on (the burst of a benchmark spreads as it
        would), as prompt + output since the prefix cache is not looked up yet, and it holds a draining replica
        open."""
        delay = self.frontend_s
        if delay <= 0.0:
            self.submit(call)
            return
        call.load = call.prompt + call.output
        self.outstanding += call.load
        self.incoming += 1
        self.clock.schedule(delay, self.submit_later, (call,))

    def submit_later(self, call: Call) -> None:
        """A call leaves the server's front end (:meth:`arrive`) and joins the queue."""
        self.incoming -= 1
        self.outstanding -= call.load
        self.submit(call)

    def submit_ready(self, call: Call) -> None:
        """A call whose prompt KV arrives from a prefill replica (disaggregated serving): it needs memory and a
        batch slot, not compute, and decodes from the step it is admitted in."""
        assert call.generated < call.output, "a call with all its tokens is finished, not handed over"
        call.replica = self
        call.kv_ready = True
        call.load = call.output - call.generated
        self.outstanding += call.load
        self.waiting.append(call)
        self._wake()

    def release_transferred(self, call: Call, now: float) -> None:
        """The KV of a handed-off call has reached its decode replica: free it here (its prompt stays cached)."""
        kv = self.kv
        kv.private -= call.target - call.held + call.window
        for n in call.nodes:
            kv.unref(n, now)
        call.nodes.clear()
        call.held = 0
        call.window = 0
        self.holding -= 1
        if self.waiting:
            # The freed KV may admit a waiting call: an idle replica (it idled because transfers held its KV) plans
            # again now, a running segment ends at its next step boundary, as a step-by-step engine would see it.
            if self.state == IDLE:
                self._wake()
            elif self.state == SEGMENT:
                self._cut(now)
        self.drain_if_empty(now)

    def _wake(self) -> None:
        if self.state == IDLE:
            # Go through the clock even with no delay: equal-time arrivals then join the same first step.
            self.state = STARTING
            self._timer(0.0)
        elif self.state == SEGMENT and len(self.waiting) == 1:
            self._cut(self.clock.now)

    def longest_prefix(self, call: Call) -> int:
        """Tokens of ``call``'s prompt this replica holds in its prefix cache (for routing)."""
        n = find(self.kv, call)
        return 0 if n is None else min(n.length, call.prompt)

    # ================================================================== timers
    def _timer(self, delay: float) -> None:
        self.gen += 1
        self.clock.post(Timer(self, self.gen), delay)

    def _fire(self, gen: int) -> None:
        if gen != self.gen:
            return  # cancelled
        now = self.clock.now
        if self.state == STEP:
            self._end_step(now)
        elif self.state == SEGMENT:
            self._end_segment(now)
        self._plan(now)

    def _cut(self, now: float) -> None:
        """Shorten the running segment so it ends at the first step boundary at or after ``now``."""
        elapsed = now - self.t0
        closed = self._seg_cum is None and self.perf.closed_form_total  # no step-time array needed
        m = self._steps_within(elapsed) if closed else bisect_right(self.seg_cum(), elapsed)  # steps done by now
        if m >= self.seg_k - 1:
            return  # the segment ends at the next boundary anyway
        self.seg_k = m + 1
        end = self.perf.decode_total(self.decoding, self.seg_c0, m + 1) if closed else float(self.seg_cum()[m])
        self._timer(self.t0 + end - now)

    def _steps_within(self, elapsed: float) -> int:
        """Whole steps of the running segment finished ``elapsed`` seconds after its start, from the closed-form
        segment duration, without building the segment's step-time array.

        The answer ``m`` is the one with ``total(m) <= elapsed < total(m + 1)`` (``total(j)``: duration of the
        first ``j`` steps), i.e. what ``bisect_right`` on the cumulative array gives. Start from the average
        step time and correct with the local step time (Newton on the cumulative time; step times change
        slowly within a segment, so one or two corrections suffice); bisect the array if that ever fails.
        """
        d, c0, k = self.decoding, self.seg_c0, self.seg_k
        perf = self.perf
        m = min(int(elapsed / self.seg_total * k), k) if self.seg_total > 0.0 else 0
        for _ in range(8):
            done = perf.decode_total(d, c0, m) if m > 0 else 0.0
            if done > elapsed:  # fewer than m steps are done
                back = int((done - elapsed) / perf.step_time(0, d, c0 + d * (m - 1)))
                m = max(m - 1 - back, 0)
                continue
            if m >= k:
                return k
            end = perf.decode_total(d, c0, m + 1)
            if elapsed < end:
                return m
            m = min(m + 1 + int((elapsed - end) / perf.step_time(0, d, c0 + d * m)), k)
        return bisect_right(self.seg_cum(), elapsed)

    def seg_cum(self) -> np.ndarray | list[float]:
        """End times (from the segment start) of the running segment's steps, computed on first use: only a
        cut or a sample inside a segment needs them."""
        if self._seg_cum is None:
            d, c0, k = self.decoding, self.seg_c0, self.seg_k
            if k <= SCALAR_SEGMENT_STEPS:
                # Short segments: a few scalar calls beat one vectorized call's fixed overhead.
                step_time = self.perf.step_time
                t = 0.0
                cum = []
                for j in range(k):
                    t += step_time(0, d, c0 + d * j)
                    cum.append(t)
                self._seg_cum = cum
            else:
                self._seg_cum = self.perf.decode_segment(d, c0, k)
        return self._seg_cum

    # ================================================================== step bookkeeping
    def _end_step(self, now: float) -> None:
        """Apply one executed step (prefill chunks and decodes)."""
        dt = now - self.t0
        self.busy_s += dt
        self.busy_prefill_s += dt
        self.steps_run += 1
        tokens = self.cur_p + self.cur_d
        d = self.cur_d
        if d == self.decoding:
            # Every decoding call took a token of this step (always, except in SGLang's prefill batches, where
            # the decodes wait: then neither their step counter nor their busy share moves).
            self.acc += dt / tokens
            self.accm += dt / tokens
            self.step += 1
        self.kv.private += d
        self.out_tokens += d
        self.prefill_tokens += self.cur_p
        if self.prefilling:
            still: list[Call] = []
            per_token = dt / tokens
            for c in self.prefilling:
                if c.chunk == 0:
                    still.append(c)
                    continue
                c.busy_share_s += c.chunk * per_token
                c.mixed_share_s += c.chunk * per_token
                c.computed += c.chunk
                c.chunk = 0
                if c.computed < c.target:
                    still.append(c)
                else:
                    self.pf_left -= c.output - c.generated
                    self._prefill_done(c, now)
            self.prefilling = still
        self._completions(now)

    def _end_segment(self, now: float) -> None:
        """Apply ``seg_k`` decode-only steps at once."""
        k = self.seg_k
        b = self.decoding
        dt = now - self.t0
        self.busy_s += dt
        self.acc += dt / b
        self.step += k
        self.steps_run += k
        self.kv.private += b * k
        self.out_tokens += b * k
        self.steps_skipped += k - 1
        if self.admission == NEW_TOKEN_RATIO:
            self.ratio_steps += k - self.seg_retracted  # the ratio decays at every decode step but a retracting one
        self._completions(now)

    def _prefill_done(self, c: Call, now: float) -> None:
        cache_prompt(self.kv, c, now)
        c.generated += 1
        self.out_tokens += 1
        if c.first_token_s is None:
            c.first_token_s = now
            self.listener.on_first_token(c, now)
        if c.generated >= c.output:
            self._finish(c, now, c.target - c.held)
            return
        if self.role == "prefill":
            # Disaggregated: the KV stays here until it has been sent; the batch slot is free now.
            c.phase = DONE
            self._leave(c)
            self.outstanding -= c.load
            self.holding += 1
            assert self.on_prefilled is not None
            self.on_prefilled(c, now)
            return
        self._start_decode(c)

    def _start_decode(self, c: Call) -> None:
        c.phase = DECODE
        c.s0 = self.step
        c.kv0 = c.computed
        c.acc0 = self.acc
        c.accm0 = self.accm
        self.q += c.kv0 - c.s0
        self.decoding += 1
        fin = self.step + c.output - c.generated
        self.fin_sum += fin
        push(self.heap, Finish(fin, c))

    def _completions(self, now: float) -> None:
        heap = self.heap
        s = self.step
        while heap and heap[0].t <= s:
            e = cast(Finish, pop(heap))
            c = e.call
            if e.epoch != c.epoch or c.phase != DECODE:
                continue
            steps = s - c.s0
            c.generated += steps
            c.busy_share_s += self.acc - c.acc0
            c.mixed_share_s += self.accm - c.accm0
            self.q -= c.kv0 - c.s0
            self.decoding -= 1
            self.fin_sum -= e.step
            self._finish(c, now, c.target - c.held + steps)

    def _join(self, c: Call) -> None:
        """``c`` enters the running batch (admitted, resumed or arrived decoded); under new-token-ratio admission
        its remaining output, clipped, is held against the budget."""
        self.running[c] = None
        if c.output > RESERVE_CLIP_TOKENS:
            self.long_calls += 1
        if self.admission == NEW_TOKEN_RATIO:
            self.ratio_hold += min(c.output - c.generated, RESERVE_CLIP_TOKENS)

    def _leave(self, c: Call) -> None:
        del self.running[c]
        if c.output > RESERVE_CLIP_TOKENS:
            self.long_calls -= 1

    def _finish(self, c: Call, now: float, private: int) -> None:
        kv = self.kv
        kv.private -= private + c.window
        c.window = 0
        for n in c.nodes:
            kv.unref(n, now)
        if c.park and self.park_tools and c.nodes:
            kv.park(c.nodes[-1])  # a tool call follows: the agent's context leaves HBM (on_tool_wait)
        c.nodes.clear()  # in place: no new list per call
        c.phase = DONE
        c.done_s = now
        self._leave(c)
        self.outstanding -= c.load
        self.listener.on_done(c, now)

    def _release(self, c: Call, now: float) -> None:
        """Preempt a running call by recompute: drop its KV, keep its generated tokens, requeue it first."""
        kv = self.kv
        if c.phase == DECODE:
            self.fin_sum -= c.s0 + c.output - c.generated
            steps = self.step - c.s0
            c.generated += steps
            c.busy_share_s += self.acc - c.acc0
            c.mixed_share_s += self.accm - c.accm0
            self.q -= c.kv0 - c.s0
            self.decoding -= 1
            kv.private -= c.target - c.held + steps + c.window
        else:
            kv.private -= c.target - c.held + c.window
            self.pf_left -= c.output - c.generated
            if c.phase == LOADING:
                self.loading -= 1  # its reload's end is ignored (the epoch moves on)
            else:
                self.prefilling.remove(c)
        for n in c.nodes:
            kv.unref(n, now)
        c.nodes.clear()  # in place: no new list per call
        c.held = 0
        c.window = 0
        c.computed = 0
        c.chunk = 0
        c.epoch += 1
        c.phase = WAITING
        c.kv_ready = False  # its transferred KV is gone: it recomputes here
        c.preemptions += 1
        self.preemptions += 1
        self._leave(c)
        self.waiting.appendleft(c)

    # ================================================================== scheduling
    def _future(self) -> int:
        """KV tokens the running calls will still add by decoding (guaranteed-no-evict reserves them)."""
        return self.fin_sum - self.decoding * self.step + self.pf_left - len(self.prefilling) - self.loading

    def _extra(self, c: Call, ready: bool) -> int:
        """KV tokens beyond the uncached prompt that must be free to admit ``c`` (serving/admission.py):
        fcfs-preempt none (a KV-ready call: this step's decode tokens); guaranteed-no-evict ``c``'s own future
        decode tokens and every running call's; new-token-ratio ``c``'s clipped output, the calls admitted
        earlier in this batch, and the ratio's share of the running calls' clipped output."""
        adm = self.admission
        left = c.output - c.generated  # tokens still to generate (the first one comes from the prefill)
        if adm == FCFS_PREEMPT:
            return self.decoding + 1 if ready else 0
        if adm == NO_EVICT:
            return (left if ready else left - 1) + self._future()
        own = left if left < RESERVE_CLIP_TOKENS else RESERVE_CLIP_TOKENS
        return own + self.ratio_hold

    def _window(self, c: Call) -> int:
        """KV tokens ``c`` holds for the model's sliding-window layers while admitted (0 without them): sized by
        the longest its sequence gets in KV, prompt plus output but the last token (EngineConfig.window_charge)."""
        return self.config.window_charge(c.prompt + c.output - 1) if self.windowed else 0

    def _admit_ready(self, c: Call, now: float) -> bool:
        """Admit a KV-ready call: store its transferred KV (what this replica does not already cache) and start
        decoding it this step. Refused (False) when the KV plus this step's decode tokens do not fit."""
        kv = self.kv
        target = c.target
        node = find(self.kv, c)
        while node is not None and node.length > target:
            node = node.parent
        hit = 0 if node is None else node.length
        need = target - hit
        win = self._window(c)
        if not kv.reserve(node, need + win + self._extra(c, True)):
            return False
        kv.private += need + win
        c.window = win
        c.held = hit
        c.computed = target
        if node is not None:
            c.nodes.append(node)
            node.last_use = now
        self._join(c)
        cache_prompt(self.kv, c, now)
        self._start_decode(c)
        return True

    def _admit(self, c: Call, budget: int, now: float) -> int:
        """Try to admit the waiting head ``c`` with ``budget`` tokens left; return the chunk (0 = refused)."""
        kv = self.kv
        target = c.prompt + c.generated
        node = find(self.kv, c)
        while node is not None and node.length >= target:
            node = node.parent  # at least one prompt token must be computed to produce the next token
        hit = 0 if node is None else node.length
        need = target - hit
        path: list[Node] | None = None
        compute = need
        if self.tiers is not None:  # a deeper prefix in a lower tier is reloaded, not computed
            path = self.tiers.path(chain_keys(c), kv, node)
            while path and path[-1].length >= target:
                path.pop()
            if path:
                compute = target - path[-1].length
        if not self.chunked and compute > budget and (self.running or budget < self.budget):
            return 0
        win = self._window(c)
        if not kv.reserve(node, need + win + (self._extra(c, False) if self.admission != FCFS_PREEMPT else 0)):
            return 0
        if c.admitted_s is None:  # admitted here, whether its prefix is reloaded or computed
            c.admitted_s = now
        c.window = win
        if path:
            return self._reload(c, node, path, target, need, budget, now)
        kv.private += need + win
        c.target = target
        c.held = hit
        c.computed = hit
        c.cached = hit if c.generated == 0 else c.cached
        if node is not None:
            c.nodes.append(node)
            node.last_use = now
        c.phase = PREFILL
        self._join(c)
        self.prefilling.append(c)
        self.pf_left += c.output - c.generated
        if not self.chunked:
            return need
        chunk = need if need < budget else budget
        return chunk if chunk < self.rank_budget else self.rank_budget

    def _reload(
        self, c: Call, node: Node | None, path: list[Node], target: int, need: int, budget: int, now: float
    ) -> int:
        """Admit ``c`` (its HBM room reserved, ``node`` pinned) with the lower-tier ``path`` below ``node``
        reloaded into HBM: it waits for the host link (serving/tiers.py), then prefills the rest. Returns -1
        (admitted, nothing computed this step), or the first chunk when nothing could be reloaded after all."""
        kv = self.kv
        assert self.tiers is not None
        deepest, dram, nvme, wait = self.tiers.reload(path, kv, now)
        hit = 0 if node is None else node.length
        moved = dram + nvme
        kv.private += need - moved + c.window
        c.target = target
        if node is not None:
            c.nodes.append(node)
            node.last_use = now
        if deepest is not None:
            kv.ref(deepest)
            c.nodes.append(deepest)
            hit = deepest.length
        c.held = hit
        c.computed = hit
        if c.generated == 0:
            c.cached = hit
            c.reloaded = [dram, nvme]
            c.reload_s = wait
        self._join(c)
        self.pf_left += c.output - c.generated
        if moved == 0:
            c.phase = PREFILL
            self.prefilling.append(c)
            left = target - hit
            return left if not self.chunked else min(left, budget, self.rank_budget)
        c.phase = LOADING
        self.loading += 1
        self.reloads_now += 1
        self.clock.post(Loaded(self, c), wait)
        return -1

    def _loaded(self, c: Call, epoch: int) -> None:
        """``c``'s prefix is back in HBM: it prefills from the next step boundary."""
        if epoch != c.epoch or c.phase != LOADING:
            return
        c.phase = PREFILL
        self.loading -= 1
        self.prefilling.append(c)
        if self.state == IDLE:
            self.state = STARTING
            self._timer(0.0)
        elif self.state == SEGMENT:
            self._cut(self.clock.now)

    def _plan(self, now: float) -> None:
        """At a step boundary: make KV room, build the next batch, start a step or a segment, or go idle
        (steps 1-4 of the module docstring; SGLang's loop is :meth:`_plan_prefill_first`)."""
        if self.admission == NEW_TOKEN_RATIO:
            self._plan_prefill_first(now)
            return
        kv = self.kv
        # 1. KV room for this step's decode tokens (never short under guaranteed-no-evict: it is reserved).
        if self.decoding and kv.free < self.decoding and not kv.make_room(self.decoding):
            while self.decoding and kv.free < self.decoding:
                newest = next(reversed(self.running))
                self._release(newest, now)
        # 2. Calls whose KV was sent from a prefill replica join the decode batch directly (FCFS head only).
        self._admit_ready_head(now)
        # 3. Token budget: decodes, pending prefill chunks, then admissions.
        d = self.decoding
        p, ctx = self._fill(self.budget - d, d, now)
        # 4. Run. After admitting a reload (nothing computed for it) the queue's new head has not been tried as a
        # KV-ready call: one step, then plan again.
        self._run(now, p, d, ctx, self.reloads_now > 0)

    def _plan_prefill_first(self, now: float) -> None:
        """SGLang's loop (new-token-ratio admission): a prefill batch when one can be formed, the decodes
        waiting meanwhile; otherwise the decode batch, retracting calls when its tokens do not fit."""
        kv = self.kv
        waiting = self.waiting
        # 1. Hold back the ratio's share of the running calls' clipped future output.
        self.ratio_hold = 0
        if waiting:
            if self.long_calls:
                future = clipped_future(self.running, self.step, DECODE)
            else:
                future = self.fin_sum - self.decoding * self.step + self.pf_left
            ratio = self.config.new_token_ratio(self.ratio0, self.ratio_steps)
            self.ratio_hold = ratio_reserve(ratio, future)
        # 2. KV-ready calls join the decode batch.
        self._admit_ready_head(now)
        # 3. A prefill batch: pending chunks, then admissions; decodes take none of the budget.
        p, ctx = self._fill(self.budget, 0, now)
        if p:
            self._run(now, p, 0, ctx, False)
            return
        # 4. The decode batch: KV room by evicting, then retracting (fewest generated tokens first).
        self.seg_retracted = 0
        if self.decoding and kv.free < self.decoding and not kv.make_room(self.decoding):
            while self.decoding and kv.free < self.decoding:
                self._release(retract_victim(self._decoding_calls(), self.step), now)
            self.ratio0 = reset_ratio(self.config, self._decoding_calls(), self.step)
            self.ratio_steps = 0
            self.seg_retracted = 1
            if not self.decoding:
                self._plan_prefill_first(now)  # all retracted: their recompute is the next prefill batch
                return
        # While a call waits, its admission is checked again after every decode step.
        self._run(now, 0, self.decoding, 0, bool(waiting))

    def _decoding_calls(self) -> list[Call]:
        return [c for c in self.running if c.phase == DECODE]

    def _admit_ready_head(self, now: float) -> None:
        waiting = self.waiting
        while waiting and waiting[0].kv_ready and len(self.running) < self.max_seqs:
            if not self._admit_ready(waiting[0], now):
                break
            waiting.popleft()

    def _fill(self, budget: int, d: int, now: float) -> tuple[int, int]:
        """Fill ``budget`` tokens with the pending prefill chunks of running calls, then FCFS admissions (stop
        at the first refusal). ``d``: decodes sharing the step. Returns (prompt tokens, their context)."""
        waiting = self.waiting
        p = 0
        ctx = 0
        self.reloads_now = 0
        self.pf_pairs = 0.0
        self.pf_big = 0
        self.pf_big_pairs = 0.0
        self.pf_big_ctx = 0
        for c in self.prefilling:
            if budget <= 0:
                c.chunk = 0
                continue
            left = c.target - c.computed
            chunk = left
            if self.chunked:  # comparisons, not min(): the compiled hot path
                if chunk > budget:
                    chunk = budget
                if chunk > self.rank_budget:
                    chunk = self.rank_budget
            if chunk > budget and (d or p):
                chunk = 0  # unchunked prompt that does not fit this step: wait for a lighter one
            c.chunk = chunk
            budget -= chunk
            p += chunk
            if chunk:
                ctx += c.computed
                self._count_chunk(c, chunk)
        while waiting and budget > 0 and len(self.running) < self.max_seqs:
            c = waiting[0]
            if c.kv_ready:
                break  # a ready call refused for memory above: FCFS, nothing passes it
            chunk = self._admit(c, budget, now)
            if chunk == 0:
                break
            waiting.popleft()
            if chunk < 0:
                continue  # admitted, its prefix reloading from a lower KV tier
            c.chunk = chunk
            budget -= chunk
            p += chunk
            ctx += c.computed
            self._count_chunk(c, chunk)
        return p, ctx

    def _count_chunk(self, c: Call, chunk: int) -> None:
        """One prompt chunk of the step being filled: its causal attention pairs, and the largest chunk, pairs and
        cached prefix (the busiest attention-DP rank's: perf roofline)."""
        pairs = chunk * (c.computed + 0.5 * chunk)
        self.pf_pairs += pairs
        if chunk > self.pf_big:
            self.pf_big = chunk
        if pairs > self.pf_big_pairs:
            self.pf_big_pairs = pairs
        if c.computed > self.pf_big_ctx:
            self.pf_big_ctx = c.computed

    def _run(self, now: float, p: int, d: int, ctx: int, single: bool) -> None:
        """Start a step of ``p`` prompt tokens and ``d`` decodes, a decode-only segment (one step only if
        ``single``), or go idle."""
        self.t0 = now
        if p == 0 and d == 0:
            self.state = IDLE
            self.drain_if_empty(now)
            return
        if p:
            self.cur_p = p
            self.cur_d = d
            self.state = STEP
            c = ctx + (self.q + d * self.step if d else 0)
            big, big_pairs, big_ctx = self.pf_big, self.pf_big_pairs, self.pf_big_ctx
            self._timer(self.perf.prefill_step_time(p, d, c, ctx, self.pf_pairs, big, big_pairs, big_ctx))
            return
        k = 1 if single else cast(Finish, self.heap[0]).step - self.step
        room = self.kv.free // d
        if room < k:
            # A reload admitted this boundary (its KV reserved, nothing computed: serving/tiers.py) may have taken
            # the room step 1 made for the decodes; the step runs all the same, as a prefill step would.
            k = room if room > 0 else 1
        if k > MAX_SEGMENT_STEPS:
            k = MAX_SEGMENT_STEPS
        self.cur_p = 0
        self.cur_d = d
        self.state = SEGMENT
        self.seg_k = k
        c0 = self.q + d * self.step
        self.seg_c0 = float(c0)
        self._seg_cum = None
        if self.perf.closed_form_total:
            self.seg_total = self.perf.decode_total(d, c0, k)
            self._timer(self.seg_total)
        else:
            cum = self.seg_cum()
            self._timer(float(cum[k - 1]))

    # ================================================================== observation
    def busy_prefill(self, now: float) -> float:
        """Seconds spent in steps that computed prompt tokens, by ``now`` (the step in progress included)."""
        return self.busy_prefill_s + (now - self.t0 if self.state == STEP else 0.0)

    def progress(self, now: float) -> tuple[int, int, int, float, int, int]:
        """State at ``now`` without disturbing the run: (running calls, waiting calls, KV tokens held,
        busy seconds, output tokens generated, prompt tokens computed). Inside a segment the steps finished by
        ``now`` are counted."""
        busy = self.busy_s
        out = self.out_tokens
        held = self.kv.private + self.kv.cached
        if self.state == SEGMENT:
            m = bisect_right(self.seg_cum(), now - self.t0)
            if m > self.seg_k:
                m = self.seg_k
            busy += now - self.t0
            out += self.decoding * m
            held += self.decoding * m
        elif self.state == STEP:
            busy += now - self.t0
        return len(self.running), len(self.waiting), held, busy, out, self.prefill_tokens

    def counters(self, now: float) -> tuple[int, int, int, int]:
        """More state at ``now``, for the time series: (steps executed, KV tokens in the prefix cache,
        preemptions, KV tokens evicted). Inside a segment the steps finished by ``now`` are counted."""
        steps = self.steps_run
        if self.state == SEGMENT:
            m = bisect_right(self.seg_cum(), now - self.t0)
            steps += min(m, self.seg_k)
        return steps, self.kv.cached, self.preemptions, self.kv.evicted_tokens

    def drain_if_empty(self, now: float) -> None:
        """A draining replica that holds nothing any more (no queued, running or in-transfer call) is removed."""
        if (
            self.status == "draining"
            and self.state == IDLE
            and not self.waiting
            and not self.running
            and not self.holding
            and not self.incoming
            and self.on_drained is not None
        ):
            self.on_drained(self, now)

    def provisioned_s(self, now: float) -> float:
        """Seconds this replica has been provisioned (paid for) by ``now``."""
        end = now if self.removed_s is None else min(now, self.removed_s)
        return max(end - self.created_s, 0.0)

    def release(self) -> None:
        """After the run: drop every call and cached node this replica holds, so they are freed at once by
        reference counting rather than left to the cyclic garbage collector."""
        self.waiting.clear()
        self.running.clear()
        self.prefilling.clear()
        self.heap.clear()
        self.kv.clear()
        if self.tiers is not None:
            self.tiers.clear()

    def finalize(self, now: float) -> None:
        """End of the horizon: charge the elapsed part of the current step or segment to the calls in it, so
        that calls' busy shares plus idle time add up to the provisioned time exactly."""
        if self.state not in (STEP, SEGMENT):
            return
        dt = now - self.t0
        self.busy_s += dt
        if self.state == SEGMENT:
            # Whole decode steps already finished inside the segment produced their tokens.
            m = min(bisect_right(self.seg_cum(), dt), self.seg_k)
            self.step += m
            self.out_tokens += self.decoding * m
            self.kv.private += self.decoding * m
            self.steps_skipped += max(m - 1, 0)
        tokens = self.cur_p + self.cur_d
        together = self.cur_d == self.decoding  # False only in a prefill batch the decodes wait out (SGLang)
        if together:
            self.acc += dt / tokens
        if self.state == STEP:
            if together:
                self.accm += dt / tokens
            self.busy_prefill_s += dt
        for c in self.prefilling:
            c.busy_share_s += c.chunk * dt / tokens
            c.mixed_share_s += c.chunk * dt / tokens
        for e in self.heap:
            f = cast(Finish, e)
            c = f.call
            if f.epoch == c.epoch and c.phase == DECODE:
                c.busy_share_s += self.acc - c.acc0
                c.mixed_share_s += self.accm - c.accm0
                c.acc0 = self.acc
                c.accm0 = self.accm
                c.generated += self.step - c.s0
                c.s0 = self.step
        self.state = IDLE
        self.gen += 1
