"""The examples at the end of every command's ``--help``: one place, so tests can check each one parses.

Help is rendered as Markdown (``rich_markup_mode="markdown"`` in :mod:`agentsim.cli`): paragraphs reflow to the
terminal and the examples stay a code block, one command per line with its comment.
"""

from __future__ import annotations

EXAMPLES: dict[str, tuple[str, ...]] = {
    "agentsim": (
        "agentsim run                                   # the built-in default scenario, a summary and a run directory",
        "agentsim example > scenario.yaml               # a commented scenario to edit",
        "agentsim run scenario.yaml -o runs/a --report  # and report.html",
        "agentsim COMMAND --help                        # each command, with examples",
    ),
    "run": (
        "agentsim run                                   # the built-in default scenario",
        "agentsim run hybrid --report                   # a built-in example, plus report.html",
        "agentsim run scenario.yaml -o runs/a --seed 3 --set cluster.pools[0].replicas=16",
        "agentsim run scenario.yaml --json --quiet      # the summary as JSON on stdout",
        "agentsim run scenario.yaml --max-memory 4000   # refuse to start if estimated above 4,000 MB (0: no limit)",
    ),
    "validate": (
        "agentsim validate scenario.yaml",
        "agentsim validate scenario.yaml --set horizon_s=7200",
    ),
    "schema": ("agentsim schema > scenario.schema.json   # for editor completion",),
    "example": (
        "agentsim example --list",
        "agentsim example hybrid > hybrid.yaml",
    ),
    "catalog": (
        "agentsim catalog",
        "agentsim catalog --json --catalog my-hardware.yaml",
    ),
    "report": (
        "agentsim report runs/a                         # report.html in the run directory",
        "agentsim report sweeps/s1 --x replicas         # a sweep: one panel per combination of the other axes",
        "agentsim report plan.json                      # a plan's Pareto frontiers",
    ),
    "compare": (
        "agentsim compare runs/a runs/b                 # differences coloured only when significant",
        "agentsim compare runs/a runs/b runs/c -o cmp   # also cmp/compare.html",
    ),
    "sweep": (
        "agentsim sweep scenario.yaml -p cluster.pools[0].replicas=4,8,16 -r 5 -o sweeps/s1",
        "agentsim sweep scenario.yaml -p cluster.router.kind=least-load,prefix-aware -w 2 -o sweeps/s2",
        "agentsim sweep scenario.yaml -p seed=1,2,3 --dask tcp://scheduler:8786 -o sweeps/s3",
    ),
    "plan": (
        "agentsim plan scenario.yaml --slo ttft_p99_s=2 --slo task_p95_s=900 --hardware h200,b200 -o plan.json",
        "agentsim plan scenario.yaml --slo ttft_p99_s=10 --topology aggregated,1:1,1:3 --emit vllm --emit dynamo",
    ),
    "calibrate": (
        "agentsim calibrate bench.csv --scenario my.yaml --pool h200 -o perf.yaml",
        "agentsim calibrate measurements.csv --where hardware=H200 --where model=Llama-3.3-70B-Instruct -o p.yaml",
    ),
    "fidelity": (
        "agentsim fidelity points.csv --no-plot",
        "agentsim fidelity points.csv --perf perf.yaml --rows --csv rows.csv",
        "agentsim fidelity points.csv --holdout 3      # calibrate on 3 rows per group, report the rest",
    ),
    "trace import": (
        "agentsim trace import mooncake conversation_trace.jsonl -o traces/kimi.parquet",
        "agentsim trace import azure AzureLLMInferenceTrace_conv.csv -o traces/azure.parquet --skip-bad",
    ),
    "trace stats": ("agentsim trace stats traces/kimi.parquet --json",),
    "trace generate": (
        "agentsim trace generate coding-agent --tasks 1000 --rate 0.5 --seed 1 -o traces/coding-1k.parquet",
        "agentsim trace generate profiles/kimi-like.yaml --tasks 500 -o traces/kimi-like.parquet",
    ),
    "trace fit": ("agentsim trace fit traces/kimi.parquet -o profiles/kimi-like.yaml",),
    "trace export": (
        "agentsim trace export mooncake-agentic traces/coding-1k.parquet -o coding.jsonl   # Dynamo v2",
        "agentsim trace export mooncake traces/coding-1k.parquet -o aiperf.jsonl --open-loop",
    ),
}


def epilog(command: str) -> str:
    """The ``Examples`` section of ``command``'s help (Markdown: a heading line and a code block)."""
    lines = "\n".join(EXAMPLES[command])
    return f"**Examples**\n\n```\n{lines}\n```"
