"""The HTML report: what it says (from synthetic trials) and that a real browser renders it.

Content tests build trials by hand, so each feature of the page (predicted points, roofline,
sensitivity, failures, flags, regressions) is checked against data that has it; the page and
the Markdown render the same gathered facts (``autotune.report.facts``). The browser
tests open reports in Debian's headless Chromium over the DevTools protocol (tests/browser.py):
one from a real small run, one of 100 synthetic trials, and a page with a deliberate error to
prove that the console check can fail.
"""

from __future__ import annotations

import html
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from autotune.config import FP32, QuantConfig
from autotune.outcome import CAUSE, Note, PassRecord, RooflinePlacement, Sensitivity
from autotune.pareto import pick
from autotune.report import render_markdown, reproduce_command, write_report
from autotune.report.facts import Regressions, find_regressions, gather
from autotune.report.html import render_html
from autotune.settings import RunSpec
from autotune.store import Prediction, Run, Store
from autotune.trial import Trial

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "test-output"
INT8 = QuantConfig.from_text("w:int8:sym:per_channel a:uint8:asym cal:minmax")
INT8_PT = QuantConfig.from_text("w:int8:asym:per_tensor a:int8:asym cal:entropy")
FP16 = QuantConfig.from_text("fp16")
LIMIT_BYTES = 5 * 2**20


# Synthetic runs (made-up figures, for the report's content only)


def make_run(run_id: str = "run-1", synthetic_data: bool = False, **changes) -> Run:
    values = dict(id=run_id, created_at="2026-01-02T03:04:05+00:00",
                  finished_at="2026-01-02T03:14:05+00:00", status="finished", model="tiny",
                  model_path="/models/tiny.onnx", model_hash="ab" * 32, space="smoke",
                  metric="top1", synthetic_data=synthetic_data, reference_accuracy=0.9,
                  settings=RunSpec(model="tiny", targets=("host-cpu",), budget=7,
                                   strategy="random", min_repeats=50, min_time_s=1.0,
                                   trial_timeout_s=600.0),
                  host={"cpu_model": "Test CPU 9000", "cores": 2, "system": "Linux 6",
                        "hostname": "bench-1", "python": "3.11.9"},
                  versions={"openvino": "2025.4.0", "onnxruntime": "1.23.0",
                            "autotune": "abc123"})
    values.update(changes)
    return Run(**values)


def make_trial(config: QuantConfig, median_ms: float | None, drop: float | None = 0.0,
               backend: str = "openvino", status: str = "ok", run_id: str = "run-1",
               memory_mib: int = 10, **extra) -> Trial:
    figures = {}
    if status == "ok":
        samples = [median_ms * (0.98 + 0.01 * i) for i in range(5)]
        figures = dict(latencies_ms=samples, latency_median_ms=median_ms,
                       latency_p90_ms=samples[3], latency_p99_ms=samples[4],
                       latency_spread=0.02, memory_bytes=memory_mib << 20,
                       peak_memory_bytes=(memory_mib + 50) << 20,
                       artifact_size_bytes=300 << 10, accuracy=0.9 - drop, accuracy_drop=drop)
    return Trial(run_id=run_id, model="tiny", model_hash="ab" * 32, config=config,
                 backend=backend, target="host-cpu", status=status, cpu_model="Test CPU 9000",
                 cores=2, **{**figures, **extra})


def sample_trials(run_id: str = "run-1") -> list[Trial]:
    heavy = [{"name": f"conv{i}", "kernel": "jit_int8", "integer": i != 2} for i in range(4)]
    return [
        make_trial(FP32, 2.0, 0.0, run_id=run_id, memory_mib=20),
        make_trial(INT8, 0.8, 0.004, run_id=run_id,
                   details={"op_precisions": heavy},
                   notes=(Note("float_fallback",
                               "int8 requested but 1 of 4 heavy ops ran in float (conv2)"),),
                   sensitivity=Sensitivity("top1", {"conv1": 0.003, "conv2": 0.021})),
        make_trial(INT8_PT, 2.4, 0.002, run_id=run_id, backend="tvm", memory_mib=5,
                   details={"op_precisions": heavy},
                   notes=(Note("integer_kernels", "all 4 heavy ops ran integer kernels "
                                                  "(jit_int8)", CAUSE),)),
        make_trial(FP16, 1.1, 0.0001, run_id=run_id, backend="tvm"),
        make_trial(QuantConfig.from_text("w:int8:sym:per_tensor a:int8:sym cal:mse"), None,
                   None, run_id=run_id, status="compile_error",
                   error="RuntimeError: no kernel for QLinearConv <int8 x int8>\n  at line 3"),
    ]


def sample_predictions(run_id: str = "run-1") -> list[Prediction]:
    """One prediction of a config the run did not measure, one of a config it did."""
    common = dict(run_id=run_id, model_hash="ab" * 32, target="host-cpu",
                  model_version="xgb-1", memory_bytes=float(8 << 20), details={})
    return [Prediction(config=INT8_PT, backend="openvino", latency_ms=0.9,
                       accuracy_drop=0.003, **common),
            Prediction(config=INT8, backend="openvino", latency_ms=0.5, accuracy_drop=0.0,
                       **common)]


def page_of(run: Run, trials: list[Trial], **gathered) -> str:
    """The page of a synthetic run, its facts gathered as write_report gathers them."""
    return render_html(gather(run, trials, **gathered))


def page_text(page: str) -> str:
    """The page's text as a reader sees it (tags dropped, entities decoded, spaces joined)."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


HOST_PEAKS = dict(peak_gops={"fp32": 384.0, "int8": 1536.0}, memory_bandwidth_gbs=20.0,
                  peaks_source="targets/host-cpu.toml")


# Content


@pytest.mark.readme_claim("index.html is one self-contained page (no network, no tool needed)")
def test_page_needs_nothing_from_the_network():
    page = page_of(make_run(), sample_trials())
    assert 'http-equiv="Content-Security-Policy"' in page and "default-src 'none'" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page)
    assert "<link" not in page and "@import" not in page and "url(http" not in page
    assert "<style>" in page and "<script>" in page and "makeSortable" in page  # inlined


def test_summary_has_the_run_facts():
    text = page_text(page_of(make_run(), sample_trials()))
    for fact in ("tiny", "/models/tiny.onnx", "host-cpu", "Test CPU 9000 (2 cores)",
                 "openvino 2025.4.0", "onnxruntime 1.23.0", "budget 7 measured trials",
                 "strategy random", "5 in all", "4 ok", "1 compile_error", "bench-1",
                 "latency = the median of the fastest measurement pass"):
        assert fact in text, fact
    assert "No data was given" not in text
    synthetic = page_text(page_of(make_run(synthetic_data=True), sample_trials()))
    assert "No data was given for this model" in synthetic
    assert "1 - cosine similarity vs fp32" in synthetic


@pytest.mark.readme_claim("summary.md: per target the recommended config with the command that "
                          "reproduces it")
def test_recommendation_with_the_command_that_reproduces_it():
    run, trials = make_run(), sample_trials()
    text = page_text(page_of(run, trials))
    int8 = trials[1]
    assert f"Recommended (fastest at ≤ 1 pp accuracy drop) {INT8.label} on openvino" in text
    assert reproduce_command(run, int8) in text
    assert "0.800 ms latency (2.50x vs fp32)" in text


def test_reproduce_command_quotes_paths_and_configs():
    run = make_run(settings=RunSpec(model="/my models/tiny.onnx", data="in data.npz"))
    command = reproduce_command(run, sample_trials()[1])
    assert command.startswith("autotune run --model '/my models/tiny.onnx' --data "
                              "'in data.npz' --target host-cpu --backend openvino")
    assert command.endswith(f"--config '{INT8.text}'")


def test_no_recommendation_names_the_nearest_configs():
    trials = [make_trial(FP32, 2.0, 0.0), make_trial(INT8, 0.8, 0.05)]
    trials[0].accuracy_drop = 0.02  # even the reference misses (a fidelity-only run can)
    text = page_text(page_of(make_run(), trials))
    assert "No config meets ≤ 1 pp accuracy drop." in text
    assert f"{INT8.label} on openvino misses by 4.00 pp" in text


@pytest.mark.readme_claim("the Pareto plot draws cost-model predictions of configs the run did not "
                          "try hollow")
def test_frontier_plot_draws_every_successful_trial_and_marks_predictions():
    page = page_of(make_run(), sample_trials(), predictions=sample_predictions())
    points = re.findall(r'<circle class="point (measured|predicted)"', page)
    # The prediction of a config the run measured is not drawn: the measurement stands.
    assert sorted(points) == ["measured", "measured", "measured", "measured", "predicted"]
    predicted = re.search(r'<circle class="point predicted"[^>]*>', page).group(0)
    assert 'fill="#ffffff"' in predicted and "stroke-dasharray" in predicted
    assert '<polyline class="frontier"' in page and 'class="recommended-ring"' in page
    assert "<title>" + html.escape(f"{INT8.label} on openvino\n{INT8.text}") in page
    text = page_text(page)
    assert "predicted by the cost model (xgb-1), not measured" in text
    assert "(4 measured, 1 predicted)" in text
    assert "predicted" not in page_text(page.split("<h3>Pareto frontier (latency")[1])


@pytest.mark.readme_claim("index.html: a roofline chart against the peaks the trials carry")
def test_roofline_places_trials_against_the_peaks_they_carry():
    trials = sample_trials()
    trials[1].roofline = RooflinePlacement(ops=int(2e8), bytes=int(4e6), precision="int8",
                                           **HOST_PEAKS)
    page = page_of(make_run(), trials)
    roofline = page.split("<h3>Roofline</h3>")[1].split("<h3>")[0]
    assert roofline.count('<polyline class="roof"') == 2
    assert roofline.count('<circle class="point"') == 1
    # 2e8 ops in 0.8 ms = 250 GOPS at 50 ops/byte, where 20 GB/s caps int8 at 1000 GOPS.
    assert "50 ops/byte, 250 GOPS" in roofline
    assert "25% of the int8 roof (memory-bound)" in roofline
    assert "int8 1536 GOPS, memory 20 GB/s (from targets/host-cpu.toml)" in page_text(roofline)


def test_roofline_shows_each_level_and_a_beaten_bound_as_the_peak_that_is_wrong():
    trials = sample_trials()
    levels = dict(level_bandwidth_gbs={"L1": 500.0, "L2": 200.0, "DRAM": 20.0},
                  estimated_levels=["L1"])
    # fp32 at 2.0 ms within its 1.0 ms bound (50%); int8 at 0.8 ms under its 2.0 ms L2 bound.
    trials[0].roofline = RooflinePlacement(
        ops=int(1e8), bytes=int(2e5), precision="fp32", bound_ms=1.0, compute_ms=0.3,
        memory_ms=1.0, bound="memory", memory_level="DRAM", **HOST_PEAKS, **levels)
    trials[1].roofline = RooflinePlacement(
        ops=int(2e8), bytes=int(4e6), precision="int8", bound_ms=2.0, compute_ms=0.1,
        memory_ms=2.0, bound="memory", memory_level="L2", **HOST_PEAKS, **levels)
    facts = gather(make_run(), trials)
    page = render_html(facts)
    roofline = page.split("<h3>Roofline</h3>")[1].split("<h3>")[0]
    assert roofline.count('<polyline class="level-roof"') == 3
    assert 'data-level="L2"' in roofline and 'data-level="DRAM"' in roofline
    assert "L1 500 GB/s (estimate)" in page_text(roofline)
    wrong = "measured faster than the L2 bound: the L2 bandwidth is too low"
    assert wrong in page_text(roofline) and "50.0%" in page_text(roofline)
    markdown = render_markdown(facts)
    assert wrong in markdown and "| L2 | memory |" in markdown
    assert "250.0%" not in markdown + page and "250%" not in markdown + page


def test_roofline_says_when_there_is_no_data_or_no_peaks():
    text = page_text(page_of(make_run(), sample_trials()))
    assert "No roofline data: no trial carries operation and byte counts" in text
    trials = sample_trials()
    trials[1].roofline = RooflinePlacement(ops=int(2e8), bytes=int(4e6), precision="int8")
    page = page_of(make_run(), trials)
    roofline = page.split("<h3>Roofline</h3>")[1].split("<h3>")[0]
    assert roofline.count('<circle class="point"') == 1 and '<polyline class="roof"' not in page
    assert "no trial carries peaks, so no roof" in page_text(roofline)


@pytest.mark.readme_claim("index.html: per-layer sensitivity when a scan ran")
def test_sensitivity_renders_only_with_data():
    page = page_of(make_run(), sample_trials())
    table = page.split('<table class="sortable sensitivity">')[1].split("</table>")[0]
    assert table.index("conv2") < table.index("conv1")  # worst first
    trials = sample_trials()
    trials[1].sensitivity = None
    assert "No per-layer sensitivity scan" in page_of(make_run(), trials)


@pytest.mark.readme_claim("the report shows every failed trial with its error, and the flags")
def test_failed_trials_and_flags_are_shown():
    run, trials = make_run(), sample_trials()
    text = page_text(page_of(run, trials))
    assert "Failed trials (1)" in text
    assert "RuntimeError: no kernel for QLinearConv <int8 x int8> at line 3" in text
    facts = gather(run, trials)
    int8 = next(f for f in facts.trials if f.trial.config == INT8)
    assert any("ran in float" in note for note in int8.flags)
    for judged in facts.trials:
        for note in judged.flags:
            assert note in text, note
    assert "quantized but not faster than fp32" not in text  # tvm has no fp32 baseline


@pytest.mark.readme_claim("the report lists quantized configs that are not faster than fp32")
def test_quantized_but_slower_is_flagged():
    trials = [make_trial(FP32, 1.0), make_trial(INT8, 1.3, 0.001)]
    text = page_text(page_of(make_run(), trials))
    assert f"{INT8.label} on openvino: quantized but not faster than fp32 (0.77x)" in text


@pytest.mark.readme_claim("the headline latency is the median of a trial's fastest measurement "
                          "pass")
def test_latency_is_the_fastest_pass_everywhere():
    """Ranking, speedups and the headline figure use Trial.latency_ms (the fastest pass's
    median), not the median of all passes pooled, which stays a displayed column."""
    fp32 = make_trial(FP32, 1.0, passes=[PassRecord(1.0, samples=5)])
    slow = make_trial(INT8, 0.9, 0.001, passes=[PassRecord(0.95, samples=2),
                                                PassRecord(0.6, samples=3)])
    fast = make_trial(INT8_PT, 0.7, 0.002, passes=[PassRecord(0.7, samples=5)])
    run = make_run()
    facts = gather(run, [fp32, slow, fast])
    (target,) = facts.targets
    assert target.recommendation.chosen.trial is slow  # 0.6 ms beats 0.7 ms
    assert [f.trial for f in target.ok] == [slow, fast, fp32]
    text = page_text(render_html(facts))
    assert "0.600 ms latency (1.67x vs fp32)" in text
    assert "0.600 ms latency (1.67x vs fp32)" in render_markdown(facts)
    row = text.split("All successful trials")[1]
    assert f"{INT8.label} openvino 0.600 0.900" in row  # latency, then the pooled median


def test_markdown_and_page_show_the_same_recommendation_and_flags():
    run = make_run()
    trials = [*sample_trials(), make_trial(INT8_PT, 2.5, 0.001),  # slower than fp32
              make_trial(FP16, 1.9, 0.0, noisy=True, spreads=[0.2, 0.3], emulated=True)]
    facts = gather(run, trials)
    markdown, text = render_markdown(facts), page_text(render_html(facts))
    (target,) = facts.targets
    chosen = target.recommendation.chosen.trial
    figures = "0.800 ms latency (2.50x vs fp32), accuracy drop 0.40 pp, memory 10.0 MiB"
    assert f"`{chosen.config.label}` on openvino, {figures}. Reproduce: " \
           f"`{target.recommendation.reproduce}`" in markdown
    assert f"{chosen.config.label} on openvino {figures} Reproduce: " \
           f"{target.recommendation.reproduce}" in text
    flagged = [note for f in target.flagged for note in f.flags]
    assert any(note.startswith("quantized but not faster") for note in flagged)
    assert any(note.startswith("noisy") for note in flagged)
    assert any(note.startswith("emulated") for note in flagged)
    for note in flagged:
        assert note in markdown and note in text, note


@pytest.mark.readme_claim("summary.md and index.html show the same facts, gathered once")
def test_html_says_everything_the_markdown_says():
    run, trials = make_run(), sample_trials()
    facts = gather(run, trials)
    markdown = render_markdown(facts)
    text = page_text(render_html(facts))
    cells = {cell.strip().strip("`") for line in markdown.splitlines() if line.startswith("|")
             for cell in line.strip("|").split("|")}
    cells -= {"", "---", "---:", "-"}
    missing = [cell for cell in cells if cell.replace("\\|", "|") not in text
               and not set(cell) <= set("-:")]
    # The Markdown joins flags with "; " in one cell; the page shows each flag on its own.
    missing = [cell for cell in missing if not all(part in text for part in cell.split("; "))]
    assert not missing


def test_regressions_section_only_when_regress_gives_one():
    run, trials = make_run(), sample_trials()
    assert 'id="regressions"' not in page_of(run, trials)
    baseline = make_run("run-0")
    found = Regressions(baseline, compared=4,
                        version_changes={"openvino": ("2025.3.0", "2025.4.0")},
                        rows=((trials[1], "slower", "median 0.6 -> 0.8 ms (+33.3%, p=0.001)"),))
    text = page_text(page_of(run, trials, regressions=found))
    assert "1 regression(s) in 4 trials measured in both runs" in text
    assert "openvino 2025.3.0 → 2025.4.0" in text and "median 0.6 -> 0.8 ms" in text
    markdown = render_markdown(gather(run, trials, regressions=found))
    assert "1 regression(s) in 4 trials" in markdown and "median 0.6 -> 0.8 ms" in markdown
    assert "No earlier run" in page_text(page_of(run, trials, regressions=Regressions(None)))


@pytest.mark.readme_claim("the report's Regressions section: against the previous comparable run")
def test_regressions_come_from_the_previous_comparable_run(tmp_path):
    store = Store(f"sqlite:///{tmp_path}/store.db")
    for run_id, created, int8_ms in (("run-0", "2026-01-01T00:00:00+00:00", 0.5),
                                     ("run-1", "2026-01-02T03:04:05+00:00", 0.8)):
        store.create_run(make_run(run_id, created_at=created))
        for trial in sample_trials(run_id):
            if trial.config == INT8:
                trial.latencies_ms = [int8_ms * (1 + 0.001 * i) for i in range(30)]
            store.add_trial(trial)
    store.create_run(make_run("other", created_at="2026-01-01T12:00:00+00:00",
                              model_hash="cd" * 32))
    run = store.get_run("run-1")
    found = find_regressions(store, run, store.trials("run-1"))
    assert found.baseline.id == "run-0"
    assert [(t.config, kind) for t, kind, _ in found.rows] == [(INT8, "slower")]
    assert find_regressions(store, store.get_run("run-0"), store.trials("run-0")).baseline is None


def hundred_trials(store: Store) -> str:
    """A stored run of 100 trials (made-up figures, 6 of them failed)."""
    configs = [FP32, *[QuantConfig.from_text(f"w:int8:{w}:{g} a:{a}:{s} cal:{c}")
                       for w in ("sym", "asym") for g in ("per_channel", "per_tensor")
                       for a in ("int8", "uint8") for s in ("sym", "asym")
                       for c in ("minmax", "entropy", "percentile", "mse")]]
    store.create_run(make_run("hundred", settings=replace(make_run().settings, budget=100)))
    for index in range(100):
        config, backend = configs[index // 2], ("openvino", "tvm")[index % 2]
        failed = index % 17 == 5
        store.add_trial(make_trial(
            config, None if failed else 0.6 + (index * 37 % 100) / 40,
            None if failed else (index * 53 % 100) / 2500, backend=backend, run_id="hundred",
            memory_mib=4 + index % 30, status="runtime_error" if failed else "ok",
            error="worker died\n" * 20 if failed else "",
            roofline=RooflinePlacement(int(2e8), int(1e6 * (1 + index % 9)), "fp32")))
    return "hundred"


@pytest.fixture(scope="module")
def hundred_report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hundred")
    store = Store(f"sqlite:///{folder}/store.db")
    return write_report(store, hundred_trials(store), folder / "reports") / "index.html"


def test_hundred_trial_report_stays_small(hundred_report):
    assert hundred_report.stat().st_size < LIMIT_BYTES
    page = hundred_report.read_text()
    assert page.count('<circle class="point measured"') == 94


# In a real browser


@pytest.fixture(scope="module")
def real_report(tiny_run) -> Path:
    """The report of a real smoke run (fp32 and int8 on OpenVINO) of the tiny CNN."""
    run_id = Store(f"sqlite:///{tiny_run}/results/autotune.db").get_run().id
    return tiny_run / "reports" / run_id / "index.html"


def real_run_facts(report: Path) -> list[str]:
    """What the real run's page must say: facts of its stored trials, each shown only when the
    section that carries it works (the headings are there whatever the content)."""
    store = Store(f"sqlite:///{report.parents[2]}/results/autotune.db")
    trials = store.trials(report.parent.name)
    assert len(trials) == 2 and all(t.ok for t in trials)
    chosen = pick(trials, 0.01).chosen
    return [f"autotune run {report.parent.name}", "No data was given for this model",
            # The frontier plot drew both trials, the recommendation names one of them:
            "Each marker is one successful trial on host-cpu (2 measured, 0 predicted)",
            f"Recommended (fastest at ≤ 1 pp accuracy drop) {chosen.config.label} on openvino",
            "autotune run --model",
            # The roofline placed the trials (its axis is drawn only with points on it):
            "arithmetic intensity (operations per byte, log scale)",
            # A smoke run scans no layer: the section says so rather than showing a table.
            "No per-layer sensitivity scan in this run",
            # Both trials are rows of the table of all successful trials, with latencies:
            *(f"{t.config.label} openvino {t.latency_ms:.3f}" for t in trials)]


@pytest.mark.openvino
def test_real_run_report_shows_its_trials(real_report):
    page = real_report.read_text()
    text = page_text(page)
    for expected in real_run_facts(real_report):
        assert expected in text, expected
    roofline = page.split("<h3>Roofline</h3>")[1].split("<h3>")[0]
    assert roofline.count('<circle class="point"') == 2
    assert page.count('<circle class="point measured"') == 2
    assert '<table class="sortable sensitivity">' not in page


def assert_clean(page) -> None:
    assert page.errors == [], page.errors
    assert page.requests == [], page.requests


@pytest.mark.browser
@pytest.mark.openvino
@pytest.mark.readme_claim("a real run's index.html loads in headless Chromium with no console "
                          "error")
def test_real_run_report_renders_cleanly(chromium, real_report):
    page = chromium.load(real_report)
    assert_clean(page)
    text = " ".join(chromium.evaluate("document.body.innerText").split())
    for expected in real_run_facts(real_report):
        assert expected in text, expected
    # Every successful trial is a point on the roofline chart as well as on the frontier plot.
    on_roofline = chromium.evaluate(
        "document.querySelectorAll('svg[aria-label=roofline] circle.point').length")
    assert on_roofline >= 2
    assert chromium.evaluate("document.querySelectorAll('svg circle.point').length") == (
        2 * on_roofline)
    assert chromium.evaluate(
        "getComputedStyle(document.querySelector('section')).borderTopStyle") == "solid"
    shot = chromium.screenshot(SCREENSHOTS / "report_html.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


@pytest.mark.browser
@pytest.mark.readme_claim("index.html: hover a point, it lights up in the tables; tables sort by a "
                          "header click")
def test_hundred_trial_report_sorts_and_links_points_to_rows(chromium, hundred_report):
    assert_clean(chromium.load(hundred_report))
    assert chromium.evaluate("document.querySelectorAll('svg circle.point.measured').length") \
        == 94
    medians = """(() => {
        const table = [...document.querySelectorAll('h3')]
            .find(h => h.textContent === 'All successful trials').nextElementSibling
            .nextElementSibling.querySelector('table');
        table.tHead.rows[0].cells[2].click();
        return [...table.tBodies[0].rows].map(r => parseFloat(r.cells[2].dataset.v));
    })()"""
    ascending = chromium.evaluate(medians)
    assert len(ascending) == 94 and ascending == sorted(ascending)
    descending = chromium.evaluate(medians)  # a second click reverses the order
    assert descending == sorted(ascending, reverse=True)
    highlighted = chromium.evaluate("""(() => {
        const point = document.querySelector('svg circle.point');
        point.dispatchEvent(new MouseEvent('mouseenter'));
        return document.querySelectorAll(`tr.hl[data-key="${point.dataset.key}"]`).length;
    })()""")
    assert highlighted >= 1
    chromium.screenshot(SCREENSHOTS / "report_html_100_trials.png")


@pytest.mark.browser
@pytest.mark.parametrize("injected, expected", [
    ("<script>notAFunction();</script>", "notAFunction is not defined"),
    ("<script>console.error('deliberate');</script>", "deliberate"),
    ('<img src="https://example.invalid/x.png">', "Content Security Policy"),
])
@pytest.mark.readme_claim("the browser tests fail on any console error or network request")
def test_the_browser_check_catches_errors(chromium, hundred_report, tmp_path, injected,
                                          expected):
    broken = tmp_path / "index.html"
    shutil.copy(hundred_report, broken)
    broken.write_text(broken.read_text().replace("</body>", injected + "</body>"))
    page = chromium.load(broken)
    assert any(expected in error for error in page.errors), page.errors
