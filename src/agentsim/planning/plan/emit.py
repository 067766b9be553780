"""Hand-over: the chosen deployment as the launch arguments or manifest of a serving stack.

The plan's answer (its cheapest row that meets the SLOs) becomes, per ``kind``:

* ``vllm``: ``vllm serve`` command lines, one per pool role (``plan-vllm.sh``). Flags from vLLM's
  ``vllm/engine/arg_utils.py``: ``--tensor-parallel-size``, ``--pipeline-parallel-size``, expert parallelism
  ``--enable-expert-parallel``; data-parallel attention is vLLM's ``--data-parallel-size`` with tensor
  parallelism 1 and expert parallelism over the data-parallel ranks; ``--max-num-seqs``,
  ``--max-num-batched-tokens``, ``--kv-cache-dtype``, ``--quantization``, ``--enforce-eager`` when the engine
  runs without CUDA graphs (``cuda_graphs: false``); disaggregated pools add
  ``--kv-transfer-config`` with the NIXL connector.
* ``sglang``: ``python -m sglang.launch_server`` command lines (``plan-sglang.sh``): ``--tp``, ``--pp-size``,
  ``--ep-size`` (the replacement of the deprecated ``--enable-ep-moe``), ``--dp`` with
  ``--enable-dp-attention``, ``--max-running-requests``, ``--chunked-prefill-size``, ``--kv-cache-dtype``,
  ``--disable-cuda-graph`` (``cuda_graphs: false``);
  disaggregated pools ``--disaggregation-mode prefill|decode`` over NIXL.
* ``dynamo``: a ``DynamoGraphDeployment`` (``nvidia.com/v1alpha1``, as in ai-dynamo/dynamo's
  ``examples/backends/vllm/deploy/{agg,disagg}.yaml``): a frontend and vLLM workers (``dynamo.vllm``) with
  their replicas, GPUs and engine arguments (``plan-dynamo.yaml``).
* ``llm-d``: values for the ``llm-d-modelservice`` Helm chart (``decode`` / ``prefill`` blocks with replicas,
  ``parallelism`` and vLLM arguments; ``plan-llm-d.yaml``).

The container images are left as the upstream examples leave them, ``...:TAG``: choose the release you run.
vLLM's own argument parser validates the vLLM arguments in the tests when vLLM is installed; otherwise they
are checked against the flags documented above.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from agentsim.catalog import ModelArch
from agentsim.files import OutputExistsError, write_text
from agentsim.planning.plan.result import PlanResult, PlanRow
from agentsim.planning.plan.space import split

KINDS = ("vllm", "sglang", "dynamo", "llm-d")
FILES = {"vllm": "plan-vllm.sh", "sglang": "plan-sglang.sh", "dynamo": "plan-dynamo.yaml", "llm-d": "plan-llm-d.yaml"}
NIXL = '{"kv_connector":"NixlConnector","kv_role":"kv_both"}'


class EmitError(ValueError):
    """Nothing to emit (no answer), an unknown kind, or the files cannot be written."""


def check_kinds(kinds: Sequence[str]) -> None:
    """Refuse a kind of hand-over file that is not one of :data:`KINDS`, naming it and the known ones."""
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise EmitError(f"--emit {', '.join(map(repr, bad))}: expected one of {', '.join(KINDS)}")


@dataclass(frozen=True)
class Role:
    """One pool of the answer: its role (``unified``, ``prefill``, ``decode``) and replica count."""

    role: str
    replicas: int


def _roles(row: PlanRow) -> list[Role]:
    assert row.replicas is not None
    if row.topology == "aggregated":
        return [Role("unified", row.replicas)]
    pre, dec = split(row.replicas, row.topology)
    return [Role("prefill", pre), Role("decode", dec)]


def _catalog_model(row: PlanRow) -> ModelArch | None:
    """The built-in catalog's entry of the answer's model, None for a model a scenario's own catalog file adds."""
    from agentsim.catalog import load_catalog

    try:
        return load_catalog().get_model(row.model)
    except KeyError:
        return None


def _hf(result: PlanResult, row: PlanRow) -> str:
    model = _catalog_model(row)
    return row.model if model is None else model.name


def _fp8_flag(row: PlanRow) -> list[str]:
    """``--quantization`` for FP8 weights: ``fp8`` (a block-scaled checkpoint's ``quant_method``, or online
    quantization of a BF16 one), none for a per-channel FBGEMM checkpoint (Meta's FP8 Llama 3.1), whose
    ``quant_method: fbgemm_fp8`` both engines read from its config: vLLM refuses a flag that contradicts it."""
    model = _catalog_model(row)
    return [] if model is not None and model.fp8_scales == "channel" else ["--quantization", "fp8"]


def _engine(result: PlanResult, row: PlanRow) -> dict[str, Any]:
    """The answer's engine as simulated (resolved with its preset), else as the scenario wrote it."""
    if row.engine:
        return row.engine
    pools = result.scenario.get("cluster", {}).get("pools", [{}])
    return dict(pools[0].get("deployment", {}).get("engine", {}) or {})


def _kv(row: PlanRow, engine: dict[str, Any]) -> str | None:
    """The KV-cache precision that was simulated (the resolved one when recorded)."""
    kv = engine.get("kv_precision", row.kv_precision)
    return None if kv is None else str(kv)


def vllm_args(row: PlanRow, model: str, engine: dict[str, Any], role: str) -> list[str]:
    """``vllm serve`` arguments for one replica of ``row`` in ``role``."""
    args = [model]
    if row.parallel == "ep-dpa":
        args += ["--tensor-parallel-size", "1", "--data-parallel-size", str(row.tp), "--enable-expert-parallel"]
    else:
        args += ["--tensor-parallel-size", str(row.tp)]
        if row.parallel == "ep":
            args.append("--enable-expert-parallel")
    if row.pp > 1:
        args += ["--pipeline-parallel-size", str(row.pp)]
    seqs = int(engine.get("max_num_seqs") or row.max_num_seqs or 256)
    batched = max(int(engine.get("max_batched_tokens") or 8192), seqs)
    args += ["--max-num-seqs", str(seqs), "--max-num-batched-tokens", str(batched)]
    args += ["--kv-cache-dtype", "fp8" if _kv(row, engine) in ("fp8", "fp4") else "auto"]
    if row.precision == "fp8":
        args += _fp8_flag(row)
    elif row.precision == "fp4":
        args += ["--quantization", "modelopt_fp4"]  # needs an NVFP4 checkpoint as the model
    args += ["--gpu-memory-utilization", str(engine.get("gpu_memory_utilization") or 0.9)]
    args.append("--enable-prefix-caching" if engine.get("prefix_caching", True) else "--no-enable-prefix-caching")
    if engine.get("chunked_prefill") is False:
        args.append("--no-enable-chunked-prefill")
    if engine.get("cuda_graphs") is False:
        args.append("--enforce-eager")
    if role != "unified":
        args += ["--kv-transfer-config", NIXL]
    return args


def sglang_args(row: PlanRow, model: str, engine: dict[str, Any], role: str) -> list[str]:
    """``python -m sglang.launch_server`` arguments for one replica of ``row`` in ``role``."""
    args = ["--model-path", model, "--tp", str(row.tp)]
    if row.parallel in ("ep", "ep-dpa"):
        args += ["--ep-size", str(row.tp)]
    if row.parallel == "ep-dpa":
        args += ["--dp", str(row.tp), "--enable-dp-attention"]
    if row.pp > 1:
        args += ["--pp-size", str(row.pp)]
    seqs = int(engine.get("max_num_seqs") or row.max_num_seqs or 256)
    batched = max(int(engine.get("max_batched_tokens") or 8192), seqs)
    args += ["--max-running-requests", str(seqs), "--chunked-prefill-size", str(batched)]
    args += ["--kv-cache-dtype", "fp8_e4m3" if _kv(row, engine) in ("fp8", "fp4") else "auto"]
    if row.precision == "fp8":
        args += _fp8_flag(row)
    elif row.precision == "fp4":
        args += ["--quantization", "modelopt_fp4"]
    if engine.get("cuda_graphs") is False:
        args.append("--disable-cuda-graph")
    if role != "unified":
        args += ["--disaggregation-mode", role, "--disaggregation-transfer-backend", "nixl"]
    return args


def _script(result: PlanResult, row: PlanRow, kind: str) -> str:
    model = _hf(result, row)
    engine = _engine(result, row)
    lines = [
        "#!/bin/sh",
        f"# agentsim plan {result.agentsim_version}: {row.label}, {row.replicas} replicas of {row.gpus_per_replica}"
        f" GPU(s) ({row.hardware}), meeting " + ", ".join(f"{k} <= {v:g}" for k, v in result.slos.items()),
        "# Run each command on its own node group of the stated GPUs, once per replica.",
    ]
    for r in _roles(row):
        if kind == "vllm":
            cmd = ["vllm", "serve", *vllm_args(row, model, engine, r.role)]
        else:
            cmd = ["python", "-m", "sglang.launch_server", *sglang_args(row, model, engine, r.role)]
        lines.append(f"# {r.role}: {r.replicas} replica(s)")
        lines.append(shlex.join(cmd))
    return "\n".join(lines) + "\n"


def dynamo_manifest(result: PlanResult, row: PlanRow) -> dict[str, Any]:
    """A DynamoGraphDeployment (v1alpha1) of the answer with vLLM workers."""
    model = _hf(result, row)
    engine = _engine(result, row)
    image = "nvcr.io/nvidia/ai-dynamo/vllm-runtime:TAG"
    services: dict[str, Any] = {
        "Frontend": {"componentType": "frontend", "replicas": 1, "extraPodSpec": {"mainContainer": {"image": image}}}
    }
    for r in _roles(row):
        args = vllm_args(row, model, engine, r.role)
        worker_args = ["--model", model, *args[1:]]
        if r.role != "unified":
            worker_args = [a for a in worker_args if a not in ("--kv-transfer-config", NIXL)]
            worker_args += ["--disaggregation-mode", r.role]
        name = {"unified": "VllmDecodeWorker", "decode": "VllmDecodeWorker", "prefill": "VllmPrefillWorker"}[r.role]
        svc: dict[str, Any] = {
            "envFromSecret": "hf-token-secret",
            "componentType": "worker",
            "replicas": r.replicas,
            "resources": {"limits": {"gpu": str(row.gpus_per_replica)}},
            "extraPodSpec": {
                "mainContainer": {"image": image, "command": ["python3", "-m", "dynamo.vllm"], "args": worker_args}
            },
        }
        if r.role != "unified":
            svc["subComponentType"] = r.role
        services[name] = svc
    return {
        "apiVersion": "nvidia.com/v1alpha1",
        "kind": "DynamoGraphDeployment",
        "metadata": {"name": f"agentsim-{row.model}".replace(".", "-")[:63]},
        "spec": {"services": services},
    }


def llmd_values(result: PlanResult, row: PlanRow) -> dict[str, Any]:
    """Values for the llm-d-modelservice Helm chart."""
    model = _hf(result, row)
    engine = _engine(result, row)
    out: dict[str, Any] = {
        "modelArtifacts": {"name": model, "uri": f"hf://{model}"},
        "routing": {"servicePort": 8000},
    }
    roles = {r.role: r for r in _roles(row)}
    for block, role in (("decode", roles.get("decode") or roles.get("unified")), ("prefill", roles.get("prefill"))):
        if role is None:
            out[block] = {"create": False}
            continue
        args = vllm_args(row, model, engine, role.role)[1:]
        tensor = 1 if row.parallel == "ep-dpa" else row.tp
        data = row.tp if row.parallel == "ep-dpa" else 1
        out[block] = {
            "create": True,
            "replicas": role.replicas,
            "parallelism": {"tensor": tensor, "data": data, "dataLocal": data, "workers": 1},
            "containers": [
                {
                    "name": "vllm",
                    "image": "ghcr.io/llm-d/llm-d:TAG",
                    "modelCommand": "vllmServe",
                    "args": args,
                    "resources": {
                        "limits": {"nvidia.com/gpu": str(row.gpus_per_replica)},
                        "requests": {"nvidia.com/gpu": str(row.gpus_per_replica)},
                    },
                }
            ],
        }
    return out


def render(result: PlanResult, kind: str) -> str:
    """The text of one hand-over file for the plan's answer."""
    check_kinds([kind])
    row = result.answer
    if row is None:
        raise EmitError("nothing meets the SLOs: there is no deployment to hand over")
    if kind in ("vllm", "sglang"):
        return _script(result, row, kind)
    head = (f"# agentsim plan {result.agentsim_version}: {row.label}, {row.replicas} replicas; "
            "set the image TAG to the release you run\n")  # fmt: skip
    doc = dynamo_manifest(result, row) if kind == "dynamo" else llmd_values(result, row)
    return head + yaml.safe_dump(doc, sort_keys=False)


def emit_files(result: PlanResult, kinds: Sequence[str], directory: Path, *, overwrite: bool = False) -> list[Path]:
    """Write each ``kind``'s file into ``directory``; refuses existing files unless ``overwrite``."""
    out = []
    texts = {k: render(result, k) for k in kinds}  # all or nothing: render before writing
    for kind, text in texts.items():
        path = Path(directory) / FILES[kind]
        try:
            write_text(path, text, overwrite=overwrite)
        except OutputExistsError as e:
            raise EmitError(str(e)) from None
        out.append(path)
    return out
