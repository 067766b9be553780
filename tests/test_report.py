"""Reports (issue 7): ``agentsim report``, ``agentsim compare`` and ``run --report``.

A 120 s run of the default scenario is reported once per module. Checks: one PNG per figure, non-empty and
exactly ``plots.PNG_SIZE_PX`` pixels (read from the PNG header with ``struct``); ``report.html`` embeds every
figure as a ``data:`` URI and needs no network and no JavaScript; headless Chromium renders it with no console
messages, every figure in the DOM and every image decoded at its size (skipped when Chromium is not installed);
``compare`` prints the side-by-side table and writes overlaid CDFs; ``import agentsim`` does not load matplotlib
or Jinja2, and without either the commands exit 2 naming the extra to install.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentsim import api, report
from agentsim.report import plots
from agentsim.report.significance import batch_values
from helpers import invoke, packaged_figures

# Figures need the optional extra; the tests that do not draw (tables, imports, errors) run without it.
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_matplotlib = pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="needs matplotlib: pip install 'agentsim[report]'")

SHORT = ["horizon_s=120", "warmup_s=20"]
FIGURES = (  # one pool: no single-bar charts (pool cost, efficiency), their figures are in the page's tables
    "ttft_cdf",
    "tpot_cdf",
    "call_e2e_cdf",
    "task_cdf",
    "ttft_split",
    "throughput",
    "batch",
    "queue",
    "kv",
    "churn",
    "tokens",
)
COMPARE_FIGURES = (
    "compare_ttft_cdf",
    "compare_tpot_cdf",
    "compare_call_e2e_cdf",
    "compare_task_cdf",
    "compare_throughput",
    "compare_efficiency",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
IMG = re.compile(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"')

def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (signature, length, b"IHDR", width, height)."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def tiny_run(out: Path, *extra: str) -> Path:
    s = api.load_scenario(api.default_scenario(), [*SHORT, *extra])
    return api.save_run(api.simulate(s), out)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("report") / "run")


@pytest.fixture(scope="module")
def other_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("report") / "more-replicas", "cluster.pools[0].replicas=6")


@pytest.fixture(scope="module")
def report_html(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``agentsim report RUN_DIR`` on a copy of the run: the report goes into the run directory."""
    copy = tmp_path_factory.mktemp("out") / "run"
    shutil.copytree(run_dir, copy)
    result = invoke("report", copy)
    assert result.exit_code == 0, result.output
    assert f"report: {copy / 'report.html'}" in result.stdout
    return copy / "report.html"


# --------------------------------------------------------------------------- report files


@needs_matplotlib
def test_pngs_exist_non_empty_and_of_the_documented_size(report_html: Path) -> None:
    assert plots.PNG_SIZE_PX == (960, 540)
    for name in FIGURES:
        f = report_html.parent / f"{name}.png"
        assert f.is_file(), name
        data = f.read_bytes()
        assert len(data) > 5_000, f"{name}: {len(data)} bytes, suspiciously small"
        assert png_size(data) == plots.PNG_SIZE_PX, name
    pngs = {p.stem for p in report_html.parent.glob("*.png")}
    assert pngs == set(FIGURES)
    assert {p.name for p in report_html.parent.iterdir()} >= {"summary.json", "calls.parquet"}, "the run is kept"


@needs_matplotlib
def test_html_embeds_every_figure_and_is_self_contained(report_html: Path) -> None:
    page = report_html.read_text()
    images = IMG.findall(page)
    assert len(images) == len(FIGURES)
    for name in FIGURES:
        assert f'id="fig-{name}"' in page, name
    # The embedded images are the PNGs written next to the page, byte for byte.
    embedded = {base64.b64decode(b) for b in images}
    assert embedded == {(report_html.parent / f"{n}.png").read_bytes() for n in FIGURES}
    lowered = page.lower()
    assert "<script" not in lowered
    assert "<link" not in lowered
    assert "http://" not in lowered and "https://" not in lowered
    assert re.search(r'src="(?!data:)', page) is None, "every src is a data: URI"
    assert "<style>" in page


@needs_matplotlib
def test_html_has_summary_slo_and_pool_tables(report_html: Path, run_dir: Path) -> None:
    page = report_html.read_text()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "coding-agents-on-h200 (seed 7)" in page
    assert "Summary (window 20–120 s)" in page
    assert f"{summary['calls_completed']:,} / {summary['calls_unfinished']:,}" in page
    assert "ttft_p99_s 10 s" in page  # the SLO table names the scenario's targets
    assert "<h2>Pools (whole run, 0–120 s)</h2>" in page
    # every warning of the summary is on the page, and each pool's accuracy entry (docs/FIDELITY.md)
    from markupsafe import escape  # what the page's templates escape text with

    assert ("<h2>Warnings</h2>" in page) == bool(summary["warnings"])
    for w in summary["warnings"]:
        assert str(escape(w["message"])) in page
    assert "<h2>How sure the step times are</h2>" in page
    checked = 0
    for pool, entry in summary["accuracy"].items():
        assert f"<td class=\"l\">{pool}</td>" in page and str(escape(entry["note"])) in page
        if entry["basis"] == "roofline" and entry["class"] is not None:
            # the cells are the packaged figures of the run's regime where they apply, else of the class
            figures = packaged_figures(entry["class"], (entry.get("regime") or {}).get("prompt_per_output"))
            checked += 1
            mape, n = figures.mape_pct["output_tok_s"], figures.n["output_tok_s"]
            bias = figures.bias_pct["output_tok_s"]
            assert f"<td>{mape:.1f}% ({n})</td>" in page and f"<td>{bias:+.1f}%</td>" in page
    assert checked >= 1  # the run has a default-roofline pool a class covers, so a figure cell was compared


# --------------------------------------------------------------------------- headless Chromium

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)

# Appended to a copy of the page: after load, record whether every image decoded at the expected size. The
# report itself carries no script; this probe only reads the DOM.
PROBE = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const bad = imgs.filter(i => !(i.complete && i.naturalWidth === %d && i.naturalHeight === %d)).map(i => i.alt);
  document.body.setAttribute("data-probe", bad.length ? "BAD:" + bad.join("|") : "OK:" + imgs.length);
});
</script>"""


def chromium_dump(page: Path, profile: Path) -> tuple[str, str]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--dump-dom",
        page.resolve().as_uri(),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, done.stderr


@needs_matplotlib
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)")
def test_chromium_renders_report_without_console_errors(report_html: Path, tmp_path: Path) -> None:
    dom, log = chromium_dump(report_html, tmp_path / "profile")
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    for name in FIGURES:
        assert f'id="fig-{name}"' in dom, name
    assert len(IMG.findall(dom)) == len(FIGURES)

    probe = tmp_path / "probe.html"
    probe.write_text(report_html.read_text().replace("</body>", PROBE % plots.PNG_SIZE_PX + "</body>"))
    dom, log = chromium_dump(probe, tmp_path / "profile")
    assert f'data-probe="OK:{len(FIGURES)}"' in dom, re.findall(r'data-probe="[^"]*"', dom) or log[-2000:]


# --------------------------------------------------------------------------- CLI


def test_cli_report_bad_directory_exits_2(tmp_path: Path) -> None:
    result = invoke("report", tmp_path / "nope")
    assert result.exit_code == 2
    assert "no such run directory" in result.stderr
    result = invoke("report", tmp_path)
    assert result.exit_code == 2
    assert "not a run directory" in result.stderr


def test_report_x_outside_a_sweep_exits_2_naming_it(run_dir: Path, tmp_path: Path) -> None:
    # --x picks a sweep's axis; on a run directory or a plan it was silently ignored.
    plan = tmp_path / "plan.json"
    plan.write_text("{}")
    for target in (run_dir, plan, tmp_path / "nope"):
        result = invoke("report", target, "--x", "replicas", "-o", tmp_path / "out")
        assert result.exit_code == 2, result.output
        assert f"--x is for sweep reports: {target} is not a sweep directory" in result.stderr
    assert not (tmp_path / "out").exists()


@needs_matplotlib
def test_report_of_a_json_that_is_no_plan_exits_2(tmp_path: Path) -> None:
    for i, text in enumerate(("[1, 2]", '"x"', "{}", '{"slos": {}, "rows": [{"slos": 3}]}', "{", b"\xff")):
        path = tmp_path / f"{i}.json"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        result = invoke("report", path)
        assert result.exit_code == 2, (text, result.output)
        assert f"{path}: not a saved plan" in result.stderr
        assert "Traceback" not in result.output


def test_run_with_report_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # write_report itself is covered above; here: run calls it on the saved run and prints where it went.
    seen: list[tuple[Path, Any]] = []

    def fake(run_dir: Path, out: Any = None) -> Path:
        seen.append((Path(run_dir), out))
        assert (Path(run_dir) / "summary.json").is_file(), "the run is saved before the report"
        return Path(run_dir) / "report.html"

    monkeypatch.setattr(report, "write_report", fake)
    out = tmp_path / "r"
    result = invoke("run", "--out", out, "-q", "--report", "--set", SHORT[0], "--set", SHORT[1])
    assert result.exit_code == 0, result.output
    assert seen == [(out, None)]
    assert f"report: {out / 'report.html'}" in result.stdout


@needs_matplotlib
def test_compare_cli_table_and_html(run_dir: Path, other_run: Path, tmp_path: Path) -> None:
    result = invoke("compare", run_dir, other_run)
    assert result.exit_code == 0, result.output
    text = result.stdout
    assert "comparison against run" in text
    assert "more-replicas" in text and "Δ %" in text
    assert "GPU-hours" in text and "+50.0%" in text  # 4 -> 6 replicas: half as many GPU-hours again
    assert "$ / Mtok output" in text and "TTFT p99 (s)" in text
    assert not (tmp_path / "cmp").exists()

    result = invoke("compare", run_dir, other_run, "--out", tmp_path / "cmp")
    assert result.exit_code == 0, result.output
    page = (tmp_path / "cmp" / "compare.html").read_text()
    assert len(IMG.findall(page)) == len(COMPARE_FIGURES)
    for name in COMPARE_FIGURES:
        assert f'id="fig-{name}"' in page
        assert png_size((tmp_path / "cmp" / f"{name}.png").read_bytes()) == plots.PNG_SIZE_PX
    assert "<script" not in page.lower()


def test_pages_escape_what_they_show(run_dir: Path) -> None:
    """Run labels are directory names, free text: the page shows them as text, never as markup."""
    pytest.importorskip("jinja2")
    runs = [report.load_run(run_dir, "<i>a</i>"), report.load_run(run_dir, "b&c")]
    page = report.render_compare_html(runs, [])
    assert "<i>" not in page and "&lt;i&gt;a&lt;/i&gt;" in page
    assert "b&amp;c" in page and "b&c" not in page


def test_compare_needs_two_runs(run_dir: Path) -> None:
    result = invoke("compare", run_dir)
    assert result.exit_code == 2
    assert "at least two" in result.stderr


def test_compare_rows_differences() -> None:
    a = {"usd_total": 10.0, "ttft_s": {"p99": 2.0}, "slo_attainment": {"calls": 0.5}, "tasks_completed": 0}
    b = {"usd_total": 15.0, "ttft_s": {"p99": 1.0}, "slo_attainment": {"calls": None}, "tasks_completed": 3}
    rows = {r.label: r for r in report.compare_rows([a, b])}
    usd = rows["$ total (window)"]
    assert usd.values == [10.0, 15.0] and usd.diffs == [None, 5.0] and usd.pcts == [None, 50.0]
    assert usd.verdicts == [0, 0]  # no batches: no way to tell the difference from noise, so no verdict
    ttft = rows["TTFT p99 (s)"]
    assert ttft.diffs[1] == -1.0 and ttft.pcts[1] == -50.0 and ttft.significant == [None, None]
    assert rows["SLO attainment calls"].diffs == [None, None]
    assert rows["tasks completed"].pcts == [None, None]  # no % change from 0
    assert rows["energy kWh"].values == [None, None]

    rng = np.random.default_rng(0)
    ba = {"TTFT p99 (s)": rng.normal(2.0, 0.5, 10), "$ per hour": np.full(10, 7.0)}
    bb = {"TTFT p99 (s)": rng.normal(1.0, 0.5, 10), "$ per hour": np.full(10, 7.0)}
    a["usd_per_hour"] = b["usd_per_hour"] = 7.0
    rows = {r.label: r for r in report.compare_rows([a, b], [ba, bb])}
    assert rows["TTFT p99 (s)"].significant[1] is True and rows["TTFT p99 (s)"].verdicts[1] == 1  # faster: better
    assert rows["$ per hour"].verdicts == [0, 0] and rows["$ per hour"].significant[1] is False
    bb["TTFT p99 (s)"] = ba["TTFT p99 (s)"] - 0.1 + rng.normal(0, 0.5, 10)  # 0.1 s against 0.5 s of noise
    rows = {r.label: r for r in report.compare_rows([a, b], [ba, bb])}
    assert rows["TTFT p99 (s)"].verdicts[1] == 0 and rows["TTFT p99 (s)"].significant[1] is False
    assert rows["$ total (window)"].verdicts == [0, 0]  # not batched: never coloured


def test_compare_colours_only_significant_differences(run_dir: Path, other_run: Path, tmp_path: Path) -> None:
    """Another seed of the same scenario: its differences are noise; at 5% per test, a handful of the ~16
    batched metrics at most may come out significant by chance, and the price per hour (constant in every
    batch) never. Six replicas instead of four: the price per hour is significantly, and truly, higher."""
    base = report.load_run(run_dir, "base")
    seed = report.load_run(tiny_run(tmp_path / "seed2", "seed=2"), "seed2")
    more = report.load_run(other_run, "more")
    rows = {r.label: r for r in report.compare.compare_rows(
        [base.summary, seed.summary, more.summary], [batch_values(x) for x in (base, seed, more)])}  # fmt: skip
    tested = [r for r in rows.values() if r.significant[1] is not None]
    assert len(tested) >= 12
    assert sum(bool(r.significant[1]) for r in tested) <= 3
    assert rows["$ per hour"].significant[1] is False and rows["$ per hour"].verdicts[1] == 0
    assert rows["$ per hour"].significant[2] is True and rows["$ per hour"].verdicts[2] == -1
    assert "within the noise" in report.compare_table([base, seed]).caption


# --------------------------------------------------------------------------- matplotlib and Jinja2 stay optional


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)


def test_import_agentsim_does_not_import_matplotlib_or_jinja2() -> None:
    done = python(
        "import sys, agentsim, agentsim.api, agentsim.cli, agentsim.report, agentsim.report.plots\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'jinja2')))"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


WITHOUT = """
import json, sys
sys.modules[sys.argv[2]] = None  # `import <module>` now raises ImportError, as if it were not installed
from typer.testing import CliRunner
from agentsim.cli import app
out = []
for args in json.loads(sys.argv[1]):
    r = CliRunner().invoke(app, args)
    out.append({"code": r.exit_code, "stdout": r.stdout, "stderr": r.stderr})
print(json.dumps(out))
"""


@pytest.mark.parametrize("module", ["matplotlib", "jinja2"])
def test_without_matplotlib_commands_exit_2_naming_the_extra(run_dir: Path, tmp_path: Path, module: str) -> None:
    cases = [
        ["report", str(run_dir), "--out", str(tmp_path / "r")],
        ["compare", str(run_dir), str(run_dir), "--out", str(tmp_path / "c")],
        ["run", "--out", str(tmp_path / "run"), "--report", "--set", SHORT[0], "--set", SHORT[1]],
        ["compare", str(run_dir), str(run_dir)],  # the table alone needs no matplotlib
    ]
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT, json.dumps(cases), module], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    for args, r in zip(cases[:3], results[:3], strict=True):
        assert r["code"] == 2, (args, r)
        assert f"reports need {module}" in r["stderr"], r
        assert "pip install 'agentsim[report]'" in r["stderr"], r
        assert "Traceback" not in r["stderr"]
    assert not (tmp_path / "run").exists(), "run --report fails before simulating"
    assert results[3]["code"] == 0, results[3]
    assert "comparison against" in results[3]["stdout"]


# --------------------------------------------------------------------------- sweep reports

SWEEP_FIGURES = (
    "sweep_ttft_s_p99",
    "sweep_tpot_s_p99",
    "sweep_output_tokens_per_s",
    "sweep_usd_per_mtok_output",
    "sweep_slo_attainment_calls",
    "sweep_pareto",
    "sweep_cost_slo",
)


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import agentsim

    out = tmp_path_factory.mktemp("sweep") / "sweep"
    base = api.load_scenario(api.default_scenario(), SHORT)
    axes = {"cluster.pools[0].replicas": [1, 2], "cluster.router.kind": ["round-robin", "least-load"]}
    agentsim.sweep(base, axes=axes, replications=2, workers=1, out=out)
    return out


@needs_matplotlib
def test_report_of_a_sweep_directory_draws_every_sweep_figure(sweep_dir: Path) -> None:
    result = invoke("report", sweep_dir)
    assert result.exit_code == 0, result.output
    page_path = sweep_dir / "report.html"
    assert f"report: {page_path}" in result.stdout
    for name in SWEEP_FIGURES:
        data = (sweep_dir / f"{name}.png").read_bytes()
        assert len(data) > 5_000, f"{name}: {len(data)} bytes, suspiciously small"
        assert png_size(data) == plots.PNG_SIZE_PX, name
    assert {p.stem for p in sweep_dir.glob("*.png")} == set(SWEEP_FIGURES)
    page = page_path.read_text()
    images = IMG.findall(page)
    assert len(images) == len(SWEEP_FIGURES)
    for name in SWEEP_FIGURES:
        assert f'id="fig-{name}"' in page, name
    assert {base64.b64decode(b) for b in images} == {(sweep_dir / f"{n}.png").read_bytes() for n in SWEEP_FIGURES}
    assert "replicas=1, kind=round-robin" in page and "replicas=2, kind=least-load" in page  # short axis names
    assert "<script" not in page.lower() and re.search(r'src="(?!data:)', page) is None
    # Small multiples: replicas (the numeric axis) on x, one panel per router kind.
    assert page.count("Panels: kind=round-robin; kind=least-load") == 5
    assert "TTFT p99 vs replicas" in page


@needs_matplotlib
def test_sweep_report_x_picks_the_axis(sweep_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    result = invoke("report", copy, "--x", "kind")
    assert result.exit_code == 0, result.output
    page = (copy / "report.html").read_text()
    assert "TTFT p99 vs kind" in page and page.count("Panels: replicas=1; replicas=2") == 5
    result = invoke("report", copy, "--x", "nope")
    assert result.exit_code == 2 and "not an axis of this sweep" in result.stderr


@needs_matplotlib
@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (Debian: apt-get install -y chromium)")
def test_chromium_renders_sweep_report(sweep_dir: Path, tmp_path: Path) -> None:
    """The sweep page in a browser: no console messages, every figure present and every image decoded."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep_dir, copy)
    assert invoke("report", copy).exit_code == 0
    page = copy / "report.html"
    dom, log = chromium_dump(page, tmp_path / "profile")
    console = [line for line in log.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "\n".join(console)
    for name in SWEEP_FIGURES:
        assert f'id="fig-{name}"' in dom, name
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", PROBE % plots.PNG_SIZE_PX + "</body>"))
    dom, log = chromium_dump(probe, tmp_path / "profile")
    assert f'data-probe="OK:{len(SWEEP_FIGURES)}"' in dom, re.findall(r'data-probe="[^"]*"', dom) or log[-2000:]


def test_sweep_axes_and_labels_are_read_back(sweep_dir: Path) -> None:
    sw = report.load_sweep(sweep_dir)
    assert report.is_sweep_dir(sweep_dir) and not report.is_sweep_dir(sweep_dir / "runs")
    assert sw.axes == ["cluster.pools[0].replicas", "cluster.router.kind"]
    assert sw.is_numeric("cluster.pools[0].replicas") and not sw.is_numeric("cluster.router.kind")
    gpus = sw.values("gpu_hours") * 3600 / sw.values("window_s")
    replicas = sw.values("cluster.pools[0].replicas")
    assert gpus[replicas == 2] == pytest.approx(2 * gpus[replicas == 1])
    with pytest.raises(report.ReportError, match="not a sweep directory"):
        report.load_sweep(sweep_dir / "runs")


def test_pareto_mask_keeps_undominated_points() -> None:
    import numpy as np

    x = np.array([1.0, 2.0, 3.0, 2.0, np.nan])
    y = np.array([3.0, 2.0, 1.0, 1.0, 9.0])
    assert plots.pareto_mask(x, y).tolist() == [True, True, True, False, False]
    # less is better on y: (2, 1) now beats (2, 2) and (1, 3)
    assert plots.pareto_mask(x, y, max_y=False).tolist() == [False, False, True, False, False]
    assert plots.pareto_mask(np.array([1.0, 1.0]), np.array([2.0, 2.0])).tolist() == [True, True]
