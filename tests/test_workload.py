"""Distributions, agent profiles and task generation, checked against mathematics and research.md.

Statistical checks use a confidence interval derived from the sample size: an estimate must lie within
``Z`` standard errors of the exact value (the standard error estimated from the sample itself), so a failure
means a wrong formula or sampler, not an unlucky seed (P(|N(0,1)| > 5) ~ 6e-7).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentsim.spec import (
    AgentProfile,
    Constant,
    Dist,
    Empirical,
    Exponential,
    FanOut,
    FixedProfile,
    Gamma,
    Lognormal,
    Uniform,
    WorkloadSpec,
)
from agentsim.workload.distributions import BlockSampler, IntSampler, cv, mean, sample, std
from agentsim.workload.profiles import (
    TaskFactory,
    builtin_catalog,
    builtin_profiles,
    deep_merge,
    resolve_profile,
)
from agentsim.workload.taskgraph import ROOT, TaskTemplate

Z = 5.0


def assert_mean_in_ci(x: np.ndarray, expected: float, what: str = "") -> None:
    """``mean(x)`` within Z standard errors of ``expected``."""
    se = float(np.std(x, ddof=1)) / math.sqrt(len(x))
    assert abs(float(np.mean(x)) - expected) <= Z * se + 1e-12 * abs(expected), (
        f"{what}: sample mean {np.mean(x)} vs exact {expected} (se {se})"
    )


# --------------------------------------------------------------------------- distributions

DISTS: list[Dist] = [
    Constant(value=7.0),
    Uniform(low=2.0, high=10.0),
    Exponential(mean=3.0),
    Lognormal(median=100.0, sigma=0.8),
    Lognormal(median=150.0, sigma=1.577, max=2000.0),
    Lognormal(median=100.0, sigma=1.0, min=50.0, max=300.0),
    Lognormal(median=100.0, sigma=0.0, min=120.0),
    Gamma(mean=2.0, cv=0.5),
    Gamma(mean=2.0, cv=2.0),
    Empirical(values=[1.0, 2.0, 5.0]),
    Empirical(values=[1.0, 2.0, 5.0], weights=[0.0, 1.0, 3.0]),
]


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.kind)
def test_sample_moments_match_exact_mean_and_cv(dist: Dist) -> None:
    rng = np.random.default_rng(11)
    n = 200_000
    x = sample(dist, rng, n)
    assert x.dtype == np.float64 and x.shape == (n,)
    assert np.all(x >= 0)
    m, s = mean(dist), std(dist)
    if s == 0.0:
        assert np.all(x == m)
        assert cv(dist) == 0.0
        return
    assert_mean_in_ci(x, m, f"{dist} mean")
    assert_mean_in_ci(x * x, s * s + m * m, f"{dist} second moment")
    assert cv(dist) == pytest.approx(s / m)


def test_closed_forms_against_textbook_values() -> None:
    # Independent of the module's formulas: the usual parameterisations.
    assert mean(Lognormal(median=100.0, sigma=0.8)) == pytest.approx(100.0 * math.exp(0.32))
    assert cv(Lognormal(median=1.0, sigma=0.8)) == pytest.approx(math.sqrt(math.exp(0.64) - 1.0))
    assert cv(Gamma(mean=5.0, cv=1.7)) == pytest.approx(1.7)
    assert cv(Exponential(mean=4.0)) == pytest.approx(1.0)
    assert cv(Uniform(low=0.0, high=1.0)) == pytest.approx(1.0 / math.sqrt(3.0))
    assert mean(Empirical(values=[1.0, 5.0], weights=[3.0, 1.0])) == pytest.approx(2.0)


def test_clipped_lognormal_mean_by_quadrature() -> None:
    """The closed form for the clipped lognormal against a numerical integral over the normal density."""
    d = Lognormal(median=150.0, sigma=1.577, min=20.0, max=2000.0)
    z = np.linspace(-12.0, 12.0, 400_001)
    pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
    x = np.clip(150.0 * np.exp(1.577 * z), 20.0, 2000.0)
    dz = z[1] - z[0]
    assert mean(d) == pytest.approx(float(np.sum(x * pdf) * dz), rel=1e-6)
    assert std(d) ** 2 + mean(d) ** 2 == pytest.approx(float(np.sum(x * x * pdf) * dz), rel=1e-6)


def test_gamma_parameterisation() -> None:
    rng = np.random.default_rng(3)
    x = sample(Gamma(mean=10.0, cv=0.5), rng, 100_000)
    # shape 1/cv^2 = 4, scale mean*cv^2 = 2.5: the third central moment is 2 k theta^3 = 125.
    c = x - 10.0
    assert_mean_in_ci(c**3, 2.0 * 4.0 * 2.5**3, "gamma third central moment")


def test_lognormal_min_above_max_is_rejected() -> None:
    with pytest.raises(ValueError, match="min"):
        sample(Lognormal(median=1.0, sigma=1.0, min=5.0, max=2.0), np.random.default_rng(0), 3)


def test_block_sampler_is_the_concatenation_of_blocks() -> None:
    d = Lognormal(median=10.0, sigma=1.0)
    bs = BlockSampler(d, np.random.default_rng(5), block=16)
    got = [bs.next() for _ in range(40)]
    rng = np.random.default_rng(5)
    want = np.concatenate([sample(d, rng, 16) for _ in range(3)])[:40]
    assert got == want.tolist()


def test_int_sampler_rounds_and_floors() -> None:
    ints = IntSampler(Uniform(low=0.0, high=3.0), np.random.default_rng(1), minimum=1, block=64)
    xs = ints.take(1000)
    assert all(isinstance(v, int) for v in xs)
    assert min(xs) == 1 and max(xs) == 3


# --------------------------------------------------------------------------- built-in profiles


def test_builtin_profiles_validate_and_cite_sources() -> None:
    cat = builtin_catalog()
    assert set(cat) == {"coding-agent", "deep-research", "support-agent", "chat", "reasoning-coder"}
    for name, entry in cat.items():
        assert isinstance(entry.profile, AgentProfile), name
        assert entry.source.strip() and entry.notes.strip(), name
    profiles = builtin_profiles()
    profiles.pop("chat")
    assert "chat" in builtin_profiles()  # a fresh dict each call


def test_builtin_profiles_match_research_figures() -> None:
    """The defaults reproduce research.md section 2."""
    p = builtin_profiles()
    code = p["coding-agent"]
    assert mean(code.output_tokens) == pytest.approx(520, rel=0.05)  # TraceLab output mean ~520
    assert isinstance(code.output_tokens, Lognormal) and code.output_tokens.median == 150
    assert mean(code.tool_s) == pytest.approx(5.9, rel=0.05)  # all tools mean ~5.9 s
    assert isinstance(code.steps, Lognormal) and 29 <= code.steps.median <= 78  # SWE-Bench Pro
    assert code.context_limit_tokens == 200_000
    assert 10_000 <= mean(code.system_prompt_tokens) <= 15_000
    research = p["deep-research"]
    assert research.fanout is not None
    assert 3 <= mean(research.fanout.subagents) <= 5
    support = p["support-agent"]
    assert 5_000 <= mean(support.system_prompt_tokens) <= 10_000 and support.shared_system_prompt
    assert isinstance(support.steps, Lognormal) and support.steps.max is not None and support.steps.max <= 30
    assert mean(support.output_tokens) == pytest.approx(180, rel=0.05)
    chat = p["chat"]
    assert mean(chat.output_tokens) == pytest.approx(210, rel=0.05)


def test_coding_agent_appended_tokens_per_step() -> None:
    """TraceLab: new tokens per step (previous output + tool result) median ~800, p90 4-6k."""
    f = TaskFactory(builtin_profiles()["coding-agent"], "c", np.random.default_rng(2))
    new = []
    for _ in range(300):
        t = f.next()
        new += [
            c.prompt_tokens - t.calls[c.prefix_parent].prompt_tokens for c in t.calls if c.prefix_parent >= 0
        ]
    assert 650 <= np.median(new) <= 950
    assert 3_500 <= np.percentile(new, 90) <= 6_500


@pytest.mark.parametrize("name", ["coding-agent", "deep-research", "support-agent", "chat"])
def test_builtin_tasks_validate(name: str) -> None:
    prof = builtin_profiles()[name]
    f = TaskFactory(prof, name, np.random.default_rng(0))
    for _ in range(200):
        t = f.next()
        t.validate()
        assert t.workload == name
        assert all(c.prompt_tokens <= prof.context_limit_tokens for c in t.calls)


# --------------------------------------------------------------------------- task structure


def chain_profile(**kw: Any) -> AgentProfile:
    base: dict[str, Any] = dict(
        system_prompt_tokens=Constant(value=1000),
        task_prompt_tokens=Lognormal(median=300, sigma=1.0),
        steps=Uniform(low=1, high=30),
        output_tokens=Lognormal(median=100, sigma=1.0),
        tool_result_tokens=Constant(value=250),
        tool_s=Exponential(mean=2.0),
    )
    base.update(kw)
    return AgentProfile(**base)


def test_context_growth_identity_on_every_call() -> None:
    prof = chain_profile()
    f = TaskFactory(prof, "w", np.random.default_rng(4))
    for _ in range(300):
        t = f.next()
        t.validate()
        c0 = t.calls[0]
        assert c0.deps == () and c0.gap_s == 0.0 and c0.prefix_parent == ROOT
        assert t.shared_prefix_tokens == 1000
        for k in range(1, len(t.calls)):
            c, prev = t.calls[k], t.calls[k - 1]
            assert c.deps == (k - 1,) and c.prefix_parent == k - 1
            assert c.prompt_tokens == prev.prompt_tokens + prev.output_tokens + 250
            assert c.gap_s >= 0.0


def test_appended_tool_tokens_follow_their_distribution() -> None:
    tool = Lognormal(median=400, sigma=0.7)
    f = TaskFactory(chain_profile(tool_result_tokens=tool), "w", np.random.default_rng(6))
    inc: list[int] = []
    gaps: list[float] = []
    for _ in range(2000):
        calls = f.next().calls
        inc += [
            calls[k].prompt_tokens - calls[k - 1].prompt_tokens - calls[k - 1].output_tokens
            for k in range(1, len(calls))
        ]
        gaps += [c.gap_s for c in calls[1:]]
    # Rounding to an integer moves each draw by at most 0.5 (mean error ~0 for a continuous draw).
    assert_mean_in_ci(np.array(inc, dtype=float), mean(tool), "tool result tokens")
    assert_mean_in_ci(np.array(gaps), 2.0, "tool seconds")


def test_steps_per_task_distribution() -> None:
    f = TaskFactory(chain_profile(steps=Empirical(values=[2, 5, 9])), "w", np.random.default_rng(8))
    n = np.array([len(f.next().calls) for _ in range(20_000)], dtype=float)
    assert set(n.tolist()) == {2.0, 5.0, 9.0}
    assert_mean_in_ci(n, 16 / 3, "steps")


def test_unshared_system_prompt_is_drawn_per_task() -> None:
    prof = chain_profile(
        system_prompt_tokens=Uniform(low=500, high=5000),
        shared_system_prompt=False,
        task_prompt_tokens=Constant(value=0),
    )
    f = TaskFactory(prof, "w", np.random.default_rng(1))
    tasks = [f.next() for _ in range(200)]
    assert all(t.shared_prefix_tokens == 0 for t in tasks)
    firsts = {t.calls[0].prompt_tokens for t in tasks}
    assert len(firsts) > 100 and min(firsts) >= 500 and max(firsts) <= 5000


def test_shared_system_prompt_is_one_draw_per_workload() -> None:
    prof = chain_profile(system_prompt_tokens=Uniform(low=500, high=5000))
    f = TaskFactory(prof, "w", np.random.default_rng(1))
    shared = {f.next().shared_prefix_tokens for _ in range(100)}
    assert len(shared) == 1 and 500 <= shared.pop() <= 5000


def test_compaction_keeps_prompts_within_the_limit() -> None:
    prof = chain_profile(
        steps=Constant(value=60),
        tool_result_tokens=Lognormal(median=800, sigma=1.5),
        context_limit_tokens=20_000,
        compact_to_tokens=3_000,
    )
    f = TaskFactory(prof, "w", np.random.default_rng(9))
    compactions = 0
    for _ in range(100):
        t = f.next()
        t.validate()
        for k, c in enumerate(t.calls):
            assert c.prompt_tokens <= 20_000
            if k and c.prefix_parent == ROOT:
                compactions += 1
                assert c.prompt_tokens == 1000 + 3_000  # system + compact_to
            elif k:
                prev = t.calls[k - 1]
                assert c.prompt_tokens >= prev.prompt_tokens + prev.output_tokens
    assert compactions > 100


def test_oversized_first_prompt_and_system_are_capped() -> None:
    prof = chain_profile(
        system_prompt_tokens=Constant(value=50_000),
        task_prompt_tokens=Constant(value=50_000),
        context_limit_tokens=30_000,
        compact_to_tokens=10_000,
    )
    t = TaskFactory(prof, "w", np.random.default_rng(0)).next()
    t.validate()
    assert t.shared_prefix_tokens == 20_000  # limit - compact_to
    assert t.calls[0].prompt_tokens == 30_000


def fanout_profile(subagents: Dist, lead_steps: int = 5, at_step: int = 2) -> AgentProfile:
    return chain_profile(
        steps=Constant(value=lead_steps),
        fanout=FanOut(
            subagents=subagents, at_step=at_step, steps=Constant(value=3), result_tokens=Constant(value=700)
        ),
    )


def test_fanout_structure() -> None:
    f = TaskFactory(fanout_profile(Constant(value=4)), "w", np.random.default_rng(3))
    t = f.next()
    t.validate()
    calls = t.calls
    assert len(calls) == 2 + 4 * 3 + 1 + 3  # lead before, chains, join, lead after
    lead = 1
    heads = [i for i, c in enumerate(calls) if c.deps == (lead,)]
    assert heads == [2, 5, 8, 11]
    context = calls[lead].prompt_tokens + calls[lead].output_tokens
    lasts = []
    for h in heads:
        assert calls[h].prefix_parent == lead and calls[h].gap_s == 0.0
        assert calls[h].prompt_tokens == context + 250  # instruction = a tool-result draw
        chain = [h, h + 1, h + 2]
        for a, b in itertools.pairwise(chain):
            assert calls[b].deps == (a,) and calls[b].prefix_parent == a
        lasts.append(chain[-1])
    join = 14
    assert calls[join].deps == tuple(lasts)
    assert calls[join].prefix_parent == lead
    assert calls[join].prompt_tokens == context + 4 * 700
    for k in (15, 16, 17):
        assert calls[k].deps == (k - 1,)
    # The chains are parallel: no call of one chain depends on a call of another.
    chain_of = {i: j for j, h in enumerate(heads) for i in range(h, h + 3)}
    for i, j in chain_of.items():
        assert all(chain_of.get(d, j) == j for d in calls[i].deps)


def test_fanout_draws_k_and_handles_short_leads() -> None:
    f = TaskFactory(
        fanout_profile(Empirical(values=[3, 4, 5]), lead_steps=1, at_step=3), "w", np.random.default_rng(7)
    )
    ks = []
    for _ in range(600):
        t = f.next()
        t.validate()
        heads = [i for i, c in enumerate(t.calls) if c.deps == (0,)]
        join = t.calls[-1]
        assert len(join.deps) == len(heads)
        assert len(t.calls) == 1 + 3 * len(heads) + 1  # the lead has only one step: fan-out, join, end
        ks.append(len(heads))
    assert set(ks) == {3, 4, 5}
    assert_mean_in_ci(np.array(ks, dtype=float), 4.0, "subagents")


def test_fanout_with_zero_subagents_is_a_plain_chain() -> None:
    t = TaskFactory(fanout_profile(Constant(value=0)), "w", np.random.default_rng(0)).next()
    t.validate()
    assert len(t.calls) == 5 and all(c.deps == (i - 1,) for i, c in enumerate(t.calls) if i)


def test_fixed_profile() -> None:
    prof = FixedProfile(prompt_tokens=Uniform(low=100, high=300), output_tokens=Constant(value=0))
    f = TaskFactory(prof, "bench", np.random.default_rng(0))
    tasks = [f.next() for _ in range(20_000)]
    for t in tasks[:100]:
        t.validate()
        assert len(t.calls) == 1 and t.shared_prefix_tokens == 0
        assert t.calls[0].prefix_parent == ROOT and t.calls[0].output_tokens == 1  # floored at 1
    prompts = np.array([t.calls[0].prompt_tokens for t in tasks], dtype=float)
    assert_mean_in_ci(prompts, 200.0, "fixed prompt")


def test_same_seed_same_tasks() -> None:
    prof = builtin_profiles()["deep-research"]
    a = TaskFactory(prof, "w", np.random.default_rng(42))
    b = TaskFactory(prof, "w", np.random.default_rng(42))
    ta = [a.next() for _ in range(50)]
    assert ta == [b.next() for _ in range(50)]
    c = TaskFactory(prof, "w", np.random.default_rng(43))
    assert ta != [c.next() for _ in range(50)]


# --------------------------------------------------------------------------- overrides


def test_named_profile_with_overrides() -> None:
    base = builtin_profiles()["coding-agent"]
    w = WorkloadSpec(
        profile="coding-agent",
        overrides={
            "steps": {"kind": "constant", "value": 5},  # a different kind replaces the whole dist
            "output_tokens": {"median": 100},  # the same kind merges: sigma and max kept
            "context_limit_tokens": 100_000,
        },
    )
    p = resolve_profile(w)
    assert isinstance(p, AgentProfile)
    assert p.steps == Constant(value=5)
    assert isinstance(p.output_tokens, Lognormal) and isinstance(base.output_tokens, Lognormal)
    assert p.output_tokens.median == 100 and p.output_tokens.sigma == base.output_tokens.sigma
    assert p.output_tokens.max == base.output_tokens.max
    assert p.context_limit_tokens == 100_000
    assert p.tool_s == base.tool_s


def test_dotted_overrides_and_adding_a_fanout() -> None:
    w = WorkloadSpec(
        profile="deep-research", overrides={"fanout.subagents": {"kind": "constant", "value": 8}}
    )
    p = resolve_profile(w)
    assert isinstance(p, AgentProfile) and p.fanout is not None
    assert p.fanout.subagents == Constant(value=8)
    assert p.fanout.steps == builtin_profiles()["deep-research"].fanout.steps  # type: ignore[union-attr]
    fan = {
        "subagents": {"kind": "constant", "value": 2},
        "steps": {"kind": "constant", "value": 2},
        "result_tokens": {"kind": "constant", "value": 10},
    }
    q = resolve_profile(WorkloadSpec(profile="chat", overrides={"fanout": fan}))
    assert isinstance(q, AgentProfile) and q.fanout is not None and q.fanout.at_step == 1
    r = resolve_profile(WorkloadSpec(profile="deep-research", overrides={"fanout": None}))
    assert isinstance(r, AgentProfile) and r.fanout is None


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"steps": {"median": -3}}, "steps"),
        ({"stepz": 3}, "stepz"),
        ({"tool_s": {"kind": "constant"}}, "tool_s"),
        ({"compact_to_tokens": 500_000}, "compact_to_tokens"),
    ],
)
def test_bad_overrides_name_the_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        resolve_profile(WorkloadSpec(profile="coding-agent", overrides=overrides))


def test_unknown_profile_lists_known_names() -> None:
    with pytest.raises(ValueError, match=r"known: chat, coding-agent, deep-research, reasoning-coder, support-agent"):
        resolve_profile(WorkloadSpec(profile="coding-agnet"))


def test_inline_profiles() -> None:
    inline = chain_profile()
    assert resolve_profile(WorkloadSpec(profile=inline)) is inline
    p = resolve_profile(WorkloadSpec(profile=inline, overrides={"tool_result_tokens": {"value": 9}}))
    assert isinstance(p, AgentProfile) and p.tool_result_tokens == Constant(value=9)
    fixed = FixedProfile(prompt_tokens=Constant(value=1000), output_tokens=Constant(value=100))
    q = resolve_profile(WorkloadSpec(profile=fixed, overrides={"output_tokens": {"value": 50}}))
    assert q == FixedProfile(prompt_tokens=Constant(value=1000), output_tokens=Constant(value=50))


def test_deep_merge() -> None:
    assert deep_merge({"a": {"b": 1, "c": 2}, "d": 3}, {"a": {"c": 5}}) == {"a": {"b": 1, "c": 5}, "d": 3}
    assert deep_merge({"kind": "x", "p": 1}, {"kind": "y", "q": 2}) == {"kind": "y", "q": 2}
    assert deep_merge({"a": 1}, {"a": None}) == {"a": None}


# --------------------------------------------------------------------------- property test


def _dist(lo: float, hi: float) -> st.SearchStrategy[Dist]:
    """Distributions whose typical values lie in [lo, hi] (tails may pass hi)."""
    pos = st.floats(lo, hi, allow_nan=False, allow_infinity=False)
    return st.one_of(
        st.builds(Constant, value=pos),
        st.tuples(pos, pos).map(lambda ab: Uniform(low=min(ab), high=max(ab))),
        st.builds(Exponential, mean=pos.filter(lambda v: v > 0)),
        st.builds(
            Lognormal,
            median=pos.filter(lambda v: v > 0),
            sigma=st.floats(0.0, 2.0),
            max=st.none() | st.just(hi * 4 + 1),
        ),
        st.builds(Gamma, mean=pos.filter(lambda v: v > 0), cv=st.floats(0.1, 3.0)),
        st.lists(pos, min_size=1, max_size=4).map(lambda vs: Empirical(values=vs)),
    )


def _counts(hi: float) -> st.SearchStrategy[Dist]:
    """Bounded count distributions, so a task stays small."""
    return st.one_of(
        st.builds(Constant, value=st.floats(0, hi)),
        st.builds(Lognormal, median=st.floats(0.5, hi / 2), sigma=st.floats(0, 1.5), max=st.just(hi)),
        st.lists(st.floats(0, hi), min_size=1, max_size=4).map(lambda vs: Empirical(values=vs)),
    )


@st.composite
def agent_profiles(draw: st.DrawFn) -> AgentProfile:
    limit = draw(st.integers(200, 200_000))
    fanout = draw(
        st.none()
        | st.builds(
            FanOut,
            subagents=_counts(6),
            at_step=st.integers(1, 5),
            steps=_counts(8),
            result_tokens=_dist(0, 5_000),
        )
    )
    return AgentProfile(
        system_prompt_tokens=_dist_draw(draw, 0, 20_000),
        shared_system_prompt=draw(st.booleans()),
        task_prompt_tokens=_dist_draw(draw, 0, 5_000),
        steps=draw(_counts(25)),
        output_tokens=_dist_draw(draw, 0, 3_000),
        tool_result_tokens=_dist_draw(draw, 0, 10_000),
        tool_s=_dist_draw(draw, 0, 30),
        fanout=fanout,
        context_limit_tokens=limit,
        compact_to_tokens=draw(st.integers(1, limit - 1)),
    )


def _dist_draw(draw: st.DrawFn, lo: float, hi: float) -> Dist:
    return draw(_dist(lo, hi))


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=agent_profiles(), seed=st.integers(0, 2**32 - 1))
def test_random_profiles_always_give_valid_tasks(profile: AgentProfile, seed: int) -> None:
    f = TaskFactory(profile, "p", np.random.default_rng(seed), block=64)
    for _ in range(10):
        t: TaskTemplate = f.next()
        t.validate()
        assert all(c.prompt_tokens <= profile.context_limit_tokens for c in t.calls)
        assert all(isinstance(c.prompt_tokens, int) and isinstance(c.output_tokens, int) for c in t.calls)
