"""Hand-over (``agentsim.planning.plan.emit``): the chosen deployment as vLLM and SGLang command lines, a Dynamo
DynamoGraphDeployment and llm-d Helm values, each parsed back and checked against the deployment it describes.
vLLM's own argument parser checks the vLLM arguments when vLLM is installed; otherwise the documented flags do."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import pytest
import yaml

from agentsim.files import OutputExistsError
from agentsim.planning.plan.emit import KINDS, EmitError, emit_files, render
from agentsim.planning.plan.result import PlanResult, PlanRow, SloEstimate


def _result(parallel: str = "tp", topology: str = "aggregated", tp: int = 4, replicas: int = 6,
            kv: str | None = "fp8", model: str = "deepseek-r1") -> PlanResult:  # fmt: skip
    row = PlanRow(label="h200 tp4", model=model, hardware="h200", tp=tp, pp=1, parallel=parallel, precision="fp8",
                  kv_precision=kv, max_num_seqs=128, preset=None, topology=topology, gpus_per_replica=tp,
                  status="meets", replicas=replicas, gpus=replicas * tp, usd_per_hour=10.0,
                  slos={"ttft_p99_s": SloEstimate(1.0, 0.9, 1.1, "meets")})  # fmt: skip
    scenario = {"name": "x", "cluster": {"pools": [{"deployment": {"engine": {"max_batched_tokens": 4096}}}]}}
    return PlanResult({"ttft_p99_s": 2.0}, 0.9, 3, 10, 64, [1, 2, 3], [row], scenario=scenario, model=model,
                      agentsim_version="0.1.0")  # fmt: skip


def _documented_vllm() -> argparse.ArgumentParser:
    """The ``vllm serve`` flags the emitter uses, as vllm/engine/arg_utils.py documents them."""
    p = argparse.ArgumentParser(prog="vllm serve", exit_on_error=False)
    p.add_argument("model")
    p.add_argument("--tensor-parallel-size", "-tp", type=int)
    p.add_argument("--pipeline-parallel-size", "-pp", type=int)
    p.add_argument("--data-parallel-size", "-dp", type=int)
    p.add_argument("--enable-expert-parallel", action="store_true")
    p.add_argument("--max-num-seqs", type=int)
    p.add_argument("--max-num-batched-tokens", type=int)
    p.add_argument("--kv-cache-dtype", choices=["auto", "fp8", "fp8_e4m3", "fp8_e5m2"])
    p.add_argument("--quantization", "-q")
    p.add_argument("--gpu-memory-utilization", type=float)
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction)
    p.add_argument("--enable-chunked-prefill", action=argparse.BooleanOptionalAction)
    p.add_argument("--enforce-eager", action="store_true")
    p.add_argument("--kv-transfer-config")
    return p


def _vllm_parser() -> argparse.ArgumentParser:
    try:  # vLLM's own parser, when vLLM is installed
        from vllm.entrypoints.openai.cli_args import make_arg_parser  # type: ignore[import-not-found]
        from vllm.utils.argparse_utils import FlexibleArgumentParser  # type: ignore[import-not-found]
    except ImportError:
        return _documented_vllm()
    return make_arg_parser(FlexibleArgumentParser())  # type: ignore[no-any-return]


def _documented_sglang() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sglang.launch_server", exit_on_error=False)
    p.add_argument("--model-path", required=True)
    p.add_argument("--tp", "--tp-size", type=int)
    p.add_argument("--pp-size", type=int)
    p.add_argument("--ep-size", type=int)
    p.add_argument("--dp", "--dp-size", type=int)
    p.add_argument("--enable-dp-attention", action="store_true")
    p.add_argument("--max-running-requests", type=int)
    p.add_argument("--chunked-prefill-size", type=int)
    p.add_argument("--kv-cache-dtype", choices=["auto", "fp8_e5m2", "fp8_e4m3"])
    p.add_argument("--quantization")
    p.add_argument("--disaggregation-mode", choices=["null", "prefill", "decode"])
    p.add_argument("--disaggregation-transfer-backend", choices=["mooncake", "nixl"])
    p.add_argument("--disable-cuda-graph", action="store_true")
    return p


def _commands(text: str, prefix: list[str]) -> list[list[str]]:
    out = []
    for line in text.splitlines():
        if line and not line.startswith("#"):
            words = shlex.split(line)
            assert words[: len(prefix)] == prefix
            out.append(words[len(prefix):])
    return out


@pytest.mark.parametrize(("parallel", "topology"), [("tp", "aggregated"), ("ep", "aggregated"),
                                                     ("ep-dpa", "aggregated"), ("ep-dpa", "1:2")])  # fmt: skip
def test_vllm_and_sglang_arguments_parse_and_say_what_was_planned(parallel: str, topology: str) -> None:
    result = _result(parallel, topology)
    vllm = _commands(render(result, "vllm"), ["vllm", "serve"])
    sglang = _commands(render(result, "sglang"), ["python", "-m", "sglang.launch_server"])
    roles = ["unified"] if topology == "aggregated" else ["prefill", "decode"]
    assert len(vllm) == len(sglang) == len(roles)
    for args in vllm:
        a = _vllm_parser().parse_args(args)
        assert a.model == "deepseek-ai/DeepSeek-R1"
        gpus = a.tensor_parallel_size * (a.data_parallel_size or 1)
        assert gpus == 4 and a.max_num_seqs == 128 and a.max_num_batched_tokens == 4096
        assert a.kv_cache_dtype == "fp8" and a.quantization == "fp8"
        assert a.enable_expert_parallel == (parallel != "tp")
        assert (a.data_parallel_size == 4) == (parallel == "ep-dpa")
        assert (a.kv_transfer_config is not None) == (topology != "aggregated")
    for args, role in zip(sglang, roles, strict=True):
        s = _documented_sglang().parse_args(args)
        assert s.tp == 4 and s.max_running_requests == 128 and s.kv_cache_dtype == "fp8_e4m3"
        assert s.enable_dp_attention == (parallel == "ep-dpa") and (s.ep_size == 4) == (parallel != "tp")
        assert s.disaggregation_mode == (None if role == "unified" else role)


def test_a_per_channel_fp8_checkpoint_keeps_the_method_its_config_declares() -> None:
    """Meta's FP8 Llama-3.1-405B declares ``quant_method: fbgemm_fp8`` in its config, which both engines read, and
    vLLM refuses a ``--quantization`` that contradicts it: no flag. DeepSeek-R1's block-scaled release declares
    ``fp8``, the flag the other test sees."""
    result = _result(model="llama-3.1-405b-fbgemm")
    (args,) = _commands(render(result, "vllm"), ["vllm", "serve"])
    a = _vllm_parser().parse_args(args)
    assert a.model == "meta-llama/Llama-3.1-405B-Instruct-FP8" and a.quantization is None
    (sglang,) = _commands(render(result, "sglang"), ["python", "-m", "sglang.launch_server"])
    assert _documented_sglang().parse_args(sglang).quantization is None


def test_dynamo_manifest_and_llmd_values_describe_the_replicas_and_gpus() -> None:
    result = _result("ep-dpa", "1:2", replicas=6)
    doc = yaml.safe_load(render(result, "dynamo"))
    assert doc["apiVersion"] == "nvidia.com/v1alpha1" and doc["kind"] == "DynamoGraphDeployment"
    services = doc["spec"]["services"]
    workers = {k: v for k, v in services.items() if v["componentType"] == "worker"}
    assert {v["subComponentType"] for v in workers.values()} == {"prefill", "decode"}
    assert sum(v["replicas"] for v in workers.values()) == 6  # 2 prefill + 4 decode (1:2)
    assert {v["resources"]["limits"]["gpu"] for v in workers.values()} == {"4"}  # strings, as the CRD wants
    for v in workers.values():
        args = v["extraPodSpec"]["mainContainer"]["args"]
        assert args[:2] == ["--model", "deepseek-ai/DeepSeek-R1"] and "--disaggregation-mode" in args
    values = yaml.safe_load(render(result, "llm-d"))
    assert values["modelArtifacts"]["uri"] == "hf://deepseek-ai/DeepSeek-R1"
    assert (values["prefill"]["replicas"], values["decode"]["replicas"]) == (2, 4)
    assert values["decode"]["parallelism"] == {"tensor": 1, "data": 4, "dataLocal": 4, "workers": 1}
    agg = yaml.safe_load(render(_result("tp", "aggregated", replicas=3), "llm-d"))
    assert agg["decode"]["replicas"] == 3 and agg["prefill"] == {"create": False}


def test_an_unknown_kind_is_refused_by_the_api_too() -> None:
    """Through the Python API an unknown kind was rendered as llm-d values, then failed with a KeyError on its
    file name (review); the CLI lists the same kinds in its help."""
    from agentsim.cli.plan import EMIT_KINDS

    assert EMIT_KINDS == KINDS
    with pytest.raises(EmitError, match="'kubernetes': expected one of vllm, sglang, dynamo, llm-d"):
        render(_result(), "kubernetes")


def test_files_are_written_all_or_nothing_and_never_overwritten(tmp_path: Path) -> None:
    result = _result()
    written = emit_files(result, ["vllm", "dynamo"], tmp_path)
    assert sorted(p.name for p in written) == ["plan-dynamo.yaml", "plan-vllm.sh"]
    with pytest.raises(EmitError, match="already exists"):
        emit_files(result, ["vllm"], tmp_path)
    emit_files(result, ["vllm"], tmp_path, overwrite=True)
    result.rows[0].status = "infeasible"
    with pytest.raises(EmitError, match="nothing meets"):
        emit_files(result, ["sglang"], tmp_path / "none")
    assert not (tmp_path / "none").exists()
    assert issubclass(OutputExistsError, FileExistsError)
