"""The memory model against vLLM's own start-up logs (``data/vllm_memory_logs.csv``).

vLLM logs what it measured before sizing its KV cache: the device's total memory, the weights, memory outside
PyTorch, the activation peak of its profiling run and the KV cache left. This prints, for each logged deployment of
a catalog model, agentsim's figures under the ``vllm`` preset with the logged settings (utilization, sequences,
token budget) next to vLLM's; the FP32 copies of the sampler's logits in the logs (``activation peak / (4 x
sequences x vocabulary)``, rows whose peak the sampler decides) next to the source counts (PyTorch's sort, which
these source installs ran, and FlashInfer's, the preset's); and the fit the preset takes from the logs, the memory
outside PyTorch (one value per run; a multi-GPU run at its largest rank).

    python experiments/fidelity/memory_logs.py
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

from agentsim import spec
from agentsim.catalog import load_catalog
from agentsim.perf.memory import kv_cache_bytes_per_gpu, kv_capacity_tokens, weight_bytes_per_gpu
from agentsim.planning.calibrate.harness import catalog_id
from agentsim.planning.calibrate.measurements import cell_number
from agentsim.serving.presets import VLLM_NATIVE_SAMPLER_FP32_COPIES, VLLM_SAMPLER_FP32_COPIES, fill_engine

DATA = Path(__file__).resolve().parent / "data" / "vllm_memory_logs.csv"
GIB = 2**30


def main() -> int:
    catalog = load_catalog()
    rows = list(csv.DictReader(DATA.open(encoding="utf-8")))
    heads = ("KV GiB ours/log", 16), ("tokens ours/log", 20), ("weights GiB", 17), ("reserve GiB", 17)
    print(f"{'deployment':<58} " + " ".join(f"{h:>{w}}" for h, w in heads))
    for r in rows:
        model_id = r["catalog_model"]
        if not model_id or not (r["kv_cache_gib"] or r["weights_gib"]):
            continue
        # PR #21429's GPU is unnamed, a 141 GB card by its free memory: taken as an H200
        hw_id = "h200" if r["gpu"].startswith("141 GB") else catalog_id(r["gpu"], catalog.hardware)
        if hw_id is None:
            continue
        engine: dict[str, object] = {"preset": "vllm"}
        for key in ("gpu_memory_utilization", "max_num_seqs", "max_batched_tokens"):
            value = cell_number(r[key])
            if value is not None:
                engine[key] = value if key == "gpu_memory_utilization" else int(value)
        d = spec.Deployment.model_validate(
            {"model": model_id, "hardware": hw_id, "tp": int(r["tp"]), "pp": int(r["pp"]),
             "precision": r["precision"], "engine": engine}
        )  # fmt: skip
        model, hw = catalog.get_model(model_id), catalog.get_hardware(hw_id)
        d = fill_engine(d, hw, model)
        weights = weight_bytes_per_gpu(model, d, hw)  # as vLLM lays them out (gpt-oss's padded experts)
        free = kv_cache_bytes_per_gpu(model, hw, d)
        tokens = kv_capacity_tokens(model, hw, d) if free > 0 else 0
        reserve = (d.engine.activation_reserve_gb or 0.0) * 1e9 / GIB
        logged_reserve = (
            (cell_number(r["non_torch_gib"]) or 0.0) + (cell_number(r["activation_peak_gib"]) or 0.0)
            if r["non_torch_gib"] and r["activation_peak_gib"] else None
        )  # fmt: skip

        def pair(ours: float, logged: float | None, fmt: str = "{:.2f}") -> str:
            return fmt.format(ours) + " / " + ("-" if logged is None else fmt.format(logged))

        label = f"{r['model'].split('/')[-1]} {r['n_gpus']}x{r['gpu']} {r['vllm']}"[:58]
        print(
            f"{label:<58} {pair(free / GIB, cell_number(r['kv_cache_gib'])):>16} "
            f"{pair(tokens, cell_number(r['kv_tokens']), '{:,.0f}'):>20} "
            f"{pair(weights / GIB, cell_number(r['weights_gib'])):>17} "
            f"{pair(reserve, logged_reserve):>17}"
        )
    def used_for(tag: str) -> list[dict[str, str]]:
        return [r for r in rows if tag in r["uses"].split(";")]  # as tests/test_device_memory.py selects them

    copies = [
        float(r["activation_peak_gib"]) * GIB / (4 * float(r["max_num_seqs"]) * float(r["vocab_size"]))
        for r in used_for("sampler")
        if r["vocab_size"] and r["max_num_seqs"]
    ]
    single = [float(r["non_torch_gib"]) for r in used_for("non_torch")]
    multi = [float(r["non_torch_gib"]) for r in used_for("non_torch_multi")]
    listed = ", ".join(f"{c:.1f}" for c in sorted(copies))
    print(
        f"\nsampler FP32 copies in the logs: {listed}; median {statistics.median(copies):.1f} (source counts: "
        f"PyTorch's sort {VLLM_NATIVE_SAMPLER_FP32_COPIES}, FlashInfer's {VLLM_SAMPLER_FP32_COPIES}, the preset's)"
    )
    print(f"non-torch, one GPU (GiB): {sorted(single)}; median {statistics.median(single):.2f}")
    print(f"non-torch, several GPUs (GiB, one per run): {sorted(multi)}; median {statistics.median(multi):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
