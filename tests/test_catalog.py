"""The catalog: every entry sourced and physical, shapes consistent with parameter counts, lookups that say
what exists, user files that extend and override."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from agentsim.catalog import (
    Catalog,
    CatalogError,
    CatalogFileError,
    Hardware,
    ModelArch,
    load_catalog,
)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog()


def _numbers(entry: object) -> dict[str, float]:
    assert hasattr(entry, "model_dump")
    dumped = entry.model_dump()
    out: dict[str, float] = {}
    for key, value in dumped.items():
        if isinstance(value, dict):
            out.update(
                {f"{key}.{k}": v for k, v in value.items() if isinstance(v, int | float) and not isinstance(v, bool)}
            )
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = value
    return out


def test_required_ids_present(catalog: Catalog) -> None:
    assert {"h100", "h200", "b200", "mi300x"} <= set(catalog.hardware)
    assert {
        "llama-3.1-8b",
        "llama-3.3-70b",
        "llama-3.1-70b",
        "llama-3.1-405b",
        "qwen3-235b-a22b",
        "deepseek-r1",
    } <= set(catalog.models)
    assert "xeon6-6980p" in catalog.cpus


def test_every_entry_has_a_source_and_positive_numbers(catalog: Catalog) -> None:
    tables = [catalog.hardware, catalog.models, catalog.prices, catalog.cpus, catalog.cpu_prices]
    for table in tables:
        assert table
        for key, entry in table.items():
            assert key == key.lower()
            assert entry.source.strip(), key
            numbers = _numbers(entry)
            assert numbers, key
            for field, value in numbers.items():
                # experts / experts_per_token / shared_experts are 0 for dense models by definition
                if field in ("experts", "experts_per_token", "shared_experts"):
                    assert value >= 0, (key, field)
                else:
                    assert value > 0, (key, field)


def test_every_priced_id_exists(catalog: Catalog) -> None:
    assert set(catalog.prices) == set(catalog.hardware)
    assert set(catalog.cpu_prices) == set(catalog.cpus)


def test_hardware_physics(catalog: Catalog) -> None:
    for key, hw in catalog.hardware.items():
        # idle below TDP (the peaks' order is the entry's own validation: tests/test_bad_input.py, CATALOG_CASES)
        assert hw.idle_w < hw.tdp_w, key
    h100 = catalog.get_hardware("h100")
    # the H100 has no FP4 units: FP4 weights are weight-only, their math runs at the BF16 peak (Hopper's MXFP4
    # MoE kernels take BF16 activations: vLLM's get_mxfp4_backend, TensorRT-LLM's GPT-OSS deployment guide)
    assert h100.math_precision("fp4") == "bf16" and h100.math_precision("fp8") == "fp8"
    assert h100.dense_tflops("fp4") == h100.dense_tflops("bf16") == h100.bf16_dense_tflops
    b200 = catalog.get_hardware("b200")
    assert b200.dense_tflops("fp4") == 2 * b200.dense_tflops("fp8") == 4 * b200.dense_tflops("bf16")
    assert b200.math_precision("fp4") == "fp4"
    # the A100 has neither FP8 nor FP4 units: FP8 weights are weight-only too (vLLM's Marlin W8A16 below compute
    # capability 8.9, quantization/fp8.py), so FP8 and FP4 math both run at its 312 TFLOPS BF16 peak
    a100 = catalog.get_hardware("a100")
    assert a100.fp8_dense_tflops is None and a100.fp4_dense_tflops is None
    assert a100.math_precision("fp8") == a100.math_precision("fp4") == "bf16"
    assert a100.dense_tflops("fp8") == a100.dense_tflops("fp4") == 312
    # a scale-up domain of 72 GPUs on GB200 NVL72
    assert catalog.get_hardware("gb200").scaleup_domain_gpus == 72


def _dense_params(m: ModelArch) -> float:
    """Parameters of a Llama-style dense model from its config shapes (untied embeddings and LM head)."""
    h = m.hidden_size
    attention = 2 * h * m.heads * m.head_dim + 2 * h * m.kv_heads * m.head_dim
    mlp = 3 * h * m.intermediate_size
    return 2 * m.vocab_size * h + m.layers * (attention + mlp)


DENSE = ["llama-2-70b", "llama-3.1-8b", "llama-3.1-70b", "llama-3.3-70b", "llama-3.1-405b"]
DENSE += ["qwen3-8b", "qwen3-14b", "qwen3-32b"]


@pytest.mark.parametrize("model_id", DENSE)
def test_dense_param_counts_match_the_shapes(catalog: Catalog, model_id: str) -> None:
    m = catalog.get_model(model_id)
    assert m.params_b * 1e9 == pytest.approx(_dense_params(m), rel=0.005)
    assert m.active_params_b == m.params_b
    assert not m.is_moe
    assert m.dense_params_b == m.params_b


def test_qwen3_moe_counts_match_the_shapes(catalog: Catalog) -> None:
    m = catalog.get_model("qwen3-235b-a22b")
    assert m.moe_intermediate_size is not None
    h = m.hidden_size
    one_expert_all_layers = m.layers * 3 * h * m.moe_intermediate_size
    attention = m.layers * (2 * h * m.heads * m.head_dim + 2 * h * m.kv_heads * m.head_dim)
    embeddings = 2 * m.vocab_size * h
    assert m.expert_params_b * 1e9 == pytest.approx(one_expert_all_layers, rel=1e-12)
    assert one_expert_all_layers == 94 * 3 * 4096 * 1536  # config.json: 94 layers, hidden 4096, expert width 1536
    total = attention + embeddings + m.experts * one_expert_all_layers
    active = attention + embeddings + m.experts_per_token * one_expert_all_layers
    assert m.params_b * 1e9 == pytest.approx(total, rel=0.005)
    assert m.active_params_b * 1e9 == pytest.approx(active, rel=0.01)


def test_deepseek_expert_size_matches_the_shapes(catalog: Catalog) -> None:
    m = catalog.get_model("deepseek-r1")
    assert m.attention == "mla" and m.kv_lora_rank == 512 and m.qk_rope_head_dim == 64
    assert m.moe_intermediate_size is not None
    moe_layers = m.layers - 3  # first_k_dense_replace = 3
    assert m.expert_params_b * 1e9 == pytest.approx(
        moe_layers * 3 * m.hidden_size * m.moe_intermediate_size, rel=1e-12
    )
    assert m.expert_params_b * 1e9 == 58 * 3 * 7168 * 2048  # config.json: 61 - 3 dense layers, 7168, width 2048
    # dense part + E experts = total by construction; + k experts, less the input embedding the card's active count
    # leaves out (129,280 x 7,168, a lookup), = the card's 37B to its rounding (the nearest billion)
    assert m.dense_params_b + m.experts * m.expert_params_b == pytest.approx(m.params_b)
    active = m.dense_params_b + m.experts_per_token * m.expert_params_b - 129280 * 7168 / 1e9
    assert active == pytest.approx(37, abs=0.5)


@pytest.mark.parametrize(("model_id", "layers", "experts"), [("gpt-oss-120b", 36, 128), ("gpt-oss-20b", 24, 32)])
def test_gpt_oss_experts_and_the_rest_from_the_shapes(
    catalog: Catalog, model_id: str, layers: int, experts: int
) -> None:
    """config.json: hidden 2,880, expert width 2,880, 64 query / 8 KV heads of 64, vocab 201,088, untied embeddings.
    The experts come from the shapes, not from ``(params - active) / (experts - k)``: the card's active count
    leaves out the input embedding, which that rule would move into the MXFP4 experts (0.6B on the 20b, 3.5% of
    an expert). What is left in BF16 is attention, the router and both embeddings, to the card's rounding."""
    m = catalog.get_model(model_id)
    h = 2880
    assert m.experts == experts and m.layers == layers
    assert m.expert_params_b * 1e9 == layers * 3 * h * h
    attention = layers * (2 * h * 64 * 64 + 2 * h * 8 * 64)  # q and o, k and v (biases left out)
    biases = layers * experts * 3 * h  # each expert's gate, up (2 x 2,880) and down (2,880) biases, BF16
    rest = attention + layers * h * experts + 2 * 201088 * h + biases  # + router, embedding and LM head
    assert m.dense_params_b * 1e9 == pytest.approx(rest, abs=5e6)  # params_b is given to 0.01B
    # the active count: attention, router, LM head and four experts
    active = attention + layers * h * experts + 201088 * h + 4 * m.expert_params_b * 1e9
    assert m.active_params_b * 1e9 == pytest.approx(active, rel=0.01)


def test_unknown_ids_list_the_known_ones(catalog: Catalog) -> None:
    with pytest.raises(CatalogError) as info:
        catalog.get_hardware("h300")
    known = ", ".join(sorted(catalog.hardware))
    assert str(info.value) == f"unknown hardware 'h300' (did you mean 'h200'?); known: {known}"
    assert isinstance(info.value, KeyError)
    with pytest.raises(CatalogError, match="unknown model 'gpt-5'; known: deepseek-r1, "):
        catalog.get_model("gpt-5")
    with pytest.raises(CatalogError, match="known: a100, b200"):
        catalog.get_price("h300")
    with pytest.raises(CatalogError, match="known: xeon6-6980p"):
        catalog.get_cpu("epyc")


def test_lookup_ignores_case(catalog: Catalog) -> None:
    assert catalog.get_hardware("H100") is catalog.get_hardware("h100")


def test_prices_by_tier(catalog: Catalog) -> None:
    price = catalog.get_price("h100")
    assert price.usd_per_hour("rental_3y") == price.usd_per_gpu_hour.rental_3y
    assert price.usd_per_hour("own_neocloud") == price.usd_per_gpu_hour.own_neocloud
    assert catalog.get_cpu_price("xeon6-6980p").usd_per_hour("rental_3y") > 0


def test_catalog_is_read_only(catalog: Catalog) -> None:
    with pytest.raises(TypeError):
        catalog.hardware["x"] = catalog.get_hardware("h100")  # type: ignore[index]
    with pytest.raises(ValidationError):
        catalog.get_hardware("h100").hbm_gb = 1.0  # type: ignore[misc]


def test_user_yaml_extends_and_overrides(tmp_path: Path) -> None:
    h100 = load_catalog().get_hardware("h100")
    new = h100.model_dump() | {
        "name": "hypothetical H300", "hbm_gb": 300.0, "source": "my guess", "efficiency": None,
        "hbm_visible_gib": None, "hbm_visible_source": None,
    }
    user = tmp_path / "mine.yaml"
    user.write_text(
        "hardware:\n"
        "  h300:\n"
        + "".join(f"    {k}: {v if v is not None else 'null'}\n" for k, v in new.items())
        + "models:\n"
        "  llama-3.1-8b:\n"
        "    name: my-8b\n    max_context_tokens: 4096\n    max_context_source: test\n"
        "    layers: 1\n    hidden_size: 8\n    heads: 2\n    kv_heads: 1\n    head_dim: 4\n"
        "    intermediate_size: 16\n    vocab_size: 10\n    params_b: 0.001\n    active_params_b: 0.001\n"
        "    source: test\n",
        encoding="utf-8",
    )
    extended = load_catalog([user])
    assert extended.get_hardware("h300").hbm_gb == 300.0
    assert extended.get_model("llama-3.1-8b").name == "my-8b"  # replaced whole
    assert extended.get_model("llama-3.3-70b").layers == 80  # untouched
    # the packaged catalog is not affected
    assert "h300" not in load_catalog().hardware
    assert load_catalog().get_model("llama-3.1-8b").layers == 32


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("gpus: {}\n", "unknown top-level key"),
        ("hardware:\n  H100: {}\n", "lowercase"),
        ("models:\n  x:\n    source: s\n    layers: 1\n    colour: red\n", r"models\.x"),
        ("hardware: [1, 2]\n", "mapping"),
        ("hardware: {x: \n", "not valid YAML"),
    ],
)
def test_bad_user_yaml_names_file_and_entry(tmp_path: Path, text: str, match: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogFileError, match=match) as info:
        load_catalog([bad])
    assert "bad.yaml" in str(info.value)


def test_missing_user_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogFileError, match="cannot read"):
        load_catalog([tmp_path / "nope.yaml"])


def test_model_arch_validation() -> None:
    base = {
        "name": "m",
        "layers": 2,
        "hidden_size": 8,
        "heads": 2,
        "kv_heads": 1,
        "head_dim": 4,
        "intermediate_size": 16,
        "vocab_size": 10,
        "params_b": 1.0,
        "active_params_b": 1.0,
        "source": "test",
        "max_context_tokens": 4096,
        "max_context_source": "test",
    }
    ModelArch.model_validate(base)
    with pytest.raises(ValidationError, match="experts_per_token"):
        ModelArch.model_validate(base | {"experts": 4, "experts_per_token": 4, "active_params_b": 0.5})
    with pytest.raises(ValidationError, match="kv_lora_rank"):
        ModelArch.model_validate(base | {"attention": "mla"})
    with pytest.raises(ValidationError, match="active_params_b"):
        ModelArch.model_validate(base | {"active_params_b": 2.0})
    with pytest.raises(ValidationError, match="source"):
        ModelArch.model_validate(base | {"source": ""})
    with pytest.raises(ValidationError, match="shared_experts"):
        ModelArch.model_validate(base | {"shared_experts": 1})  # a dense model
    with pytest.raises(ValidationError, match="sglang_hybrid_swa describes a model with sliding-window layers"):
        ModelArch.model_validate(base | {"sglang_hybrid_swa": True})
    # experts sized from the shapes: 3 x 8 x 16 x 2 layers = 768 parameters an expert
    moe = base | {"experts": 4, "experts_per_token": 1, "params_b": 4e-6, "active_params_b": 2e-6}
    assert ModelArch.model_validate(moe).expert_params_b == 768 / 1e9
    too_small = r"3 x hidden_size 8 x 16 x 2 MoE layers\): 0\.0B for 4 experts .* params_b \(3e-06\)"
    with pytest.raises(ValidationError, match=too_small):
        ModelArch.model_validate(moe | {"params_b": 3e-6})  # 4 x 768 = 3,072 routed parameters of 3,000
    with pytest.raises(ValidationError, match=r"active_params_b \(7e-07\) must exceed"):
        ModelArch.model_validate(moe | {"active_params_b": 7e-7})  # one expert is 768
    # attention: 2 layers x (q and o 8 x 8, k and v 8 x 4) = 384 parameters; 3,300 - 3,072 leaves 228 beside them
    with pytest.raises(ValidationError, match=r"leaves 0\.00B beside the 4 experts .* less than its attention"):
        ModelArch.model_validate(moe | {"params_b": 3.3e-6})
    assert ModelArch.model_validate(moe).attention_params_b == 384 / 1e9


def test_hardware_validation(catalog: Catalog) -> None:
    raw = catalog.get_hardware("h100").model_dump()
    with pytest.raises(ValidationError, match="idle_w"):
        Hardware.model_validate(raw | {"idle_w": 800})
    with pytest.raises(ValidationError):
        Hardware.model_validate(raw | {"hbm_gb": -1})


def test_every_catalog_model_has_a_context_window_with_a_source(catalog: Catalog) -> None:
    """The packaged models' windows are their config.json max_position_embeddings (see models.yaml)."""
    expected = {
        "llama-2-70b": 4096,
        "llama-3.1-8b": 131072,
        "llama-3.1-70b": 131072,
        "llama-3.3-70b": 131072,
        "llama-3.1-405b": 131072,
        "llama-3.1-405b-fbgemm": 131072,
        "qwen3-235b-a22b": 40960,
        "deepseek-r1": 163840,
        "deepseek-v3": 163840,
        "gpt-oss-120b": 131072,
        "gpt-oss-20b": 131072,
        "qwen3-8b": 40960,
        "qwen3-14b": 40960,
        "qwen3-32b": 40960,
    }
    assert {k: m.max_context_tokens for k, m in catalog.models.items()} == expected
    assert all(m.max_context_source.strip() for m in catalog.models.values())


def test_a_user_model_without_a_context_window_is_refused_by_name(tmp_path: Path) -> None:
    user = tmp_path / "mine.yaml"
    user.write_text(
        "models:\n  my-model:\n    name: m\n    layers: 1\n    hidden_size: 8\n    heads: 2\n    kv_heads: 1\n"
        "    head_dim: 4\n    intermediate_size: 16\n    vocab_size: 10\n    params_b: 0.001\n"
        "    active_params_b: 0.001\n    source: test\n",
        encoding="utf-8",
    )
    needs = r"mine\.yaml:2: models\.my-model: max_context_tokens and max_context_source required"
    with pytest.raises(CatalogFileError, match=needs):
        load_catalog([user])


def test_b200_fp4_fraction_is_the_b200_measurement() -> None:
    """B200's NVFP4 GEMM fraction is torchao's best measured square shape on B200, 5.50 of 9.0 PFLOPS at 6144^3
    (pytorch/ao PR #2427), not GB200's cuBLASLt 0.76 (docs/FIDELITY.md, cause 19)."""
    eff = load_catalog().get_hardware("b200").efficiency
    assert eff is not None and eff.gemm_fp4 == round(5.50e15 / 9.0e15, 2) == 0.61
    assert "pytorch/ao PR #2427" in (eff.source or "")
