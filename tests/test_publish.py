"""``autotune publish``: the history site over a store of synthetic runs (nothing compiled):
its pages, the change point marked where the runtime changed and named on hover, escaping,
no network references, and a clean load in headless Chromium."""

from __future__ import annotations

import contextlib
import html
import io
import re
from pathlib import Path

import numpy as np
import pytest
from test_compare_cli import INT8, add_run, draw

from autotune.cli import main
from autotune.config import FP32
from autotune.publish import page_file
from autotune.store import Store

ODD = 'odd<b>&"model'  # a model name that is HTML


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, str]:
    """A store of 8 nightly runs of "tiny" (int8 18% slower from the 5th, when OpenVINO
    changed) and 2 of a model whose name is HTML; published once. Returns (folder, stderr)."""
    folder = tmp_path_factory.mktemp("site")
    url = f"sqlite:///{folder}/autotune.db"
    store = Store(url)
    rng = np.random.default_rng(5)
    for index in range(1, 9):
        openvino, scale = ("2025.4.0", 1.0) if index <= 4 else ("2026.0.0", 1.18)
        add_run(store, f"run-0{index}", openvino,
                [(FP32, "ok", draw(index, 2.0, rng.lognormal(0.0, 0.01), count=100)),
                 (INT8, "ok", draw(20 + index, 1.0, scale * rng.lognormal(0.0, 0.01),
                                   count=100))])
    for index in (1, 2):
        add_run(store, f"odd-0{index}", "2026.0.0", [(FP32, "ok", draw(40 + index, 2.0))],
                model=ODD, created_at=f"2026-11-02T00:00:0{index}+00:00")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(["publish", str(folder / "out"), "--store", url]) == 0
    return folder / "out", err.getvalue()


def network_references(page: str) -> list[str]:
    return [url for url in re.findall(r"https?://[^\s\"'<>]*", page)
            if url != "http://www.w3.org/2000/svg"]


@pytest.mark.readme_claim("autotune publish DIR: index.html lists every model x target with its "
                          "latest run")
def test_the_index_lists_every_model_and_target_with_its_latest_run(site):
    out, err = site
    assert "page 1/2:" in err and "page 2/2: tiny on host-cpu (2 series)" in err
    index = (out / "index.html").read_text()
    tiny = page_file("tiny", "host-cpu")
    assert f'<a href="{tiny}">tiny</a>' in index
    row = index.split(f'href="{tiny}"')[1].split("</tr>")[0]
    assert "<code>run-08</code>" in row and "openvino 2026.0.0" in row
    assert '>1 (1 worse)</td>' in row  # the int8 latency step
    assert network_references(index) == []
    # Every store string is escaped: the odd model's name never appears as markup.
    assert "<b>" not in index and html.escape(ODD) in index
    assert (out / page_file(ODD, "host-cpu")).is_file()


@pytest.mark.readme_claim("a publish page draws each change point as a dashed line naming what "
                          "changed")
def test_a_page_marks_the_change_point_and_names_the_package_on_hover(site):
    out, _ = site
    page = (out / page_file("tiny", "host-cpu")).read_text()
    assert network_references(page) == []
    marks = re.findall(r'<g class="change-point" data-metric="(\w+)">.*?<title>(.*?)</title>',
                       page, re.S)
    assert [metric for metric, _ in marks] == ["latency"]
    hover = html.unescape(marks[0][1])
    assert hover.startswith("latency +1")
    assert hover.endswith("what changed between run run-04 and run run-05:\n"
                          "openvino 2025.4.0 -> 2026.0.0")
    # Every series has its three charts; the change point is listed in words too.
    assert page.count('aria-label="latency of ') == 2
    assert page.count('aria-label="memory of ') == 2
    assert page.count('aria-label="accuracy of ') == 2
    assert "at run run-05: openvino 2025.4.0 -&gt; 2026.0.0</li>" in page
    # The latest frontier beside the previous comparable run's, and a pick per run.
    assert page.count('aria-label="Pareto frontier of tiny"') == 2
    assert "latest run: <code>run-08</code>" in page
    assert "previous comparable run: <code>run-07</code>" in page
    picks = page.split('<section id="picks">')[1].split("</section>")[0]
    assert picks.count("<tr><td>#") == 8 and picks.count(" on openvino: ") == 8


@pytest.mark.readme_claim("publish: a store without runs exits 2")
def test_a_store_without_runs_or_an_unknown_model_is_bad_input(tmp_path, capsys, site):
    assert main(["publish", str(tmp_path / "out"), "--store",
                 f"sqlite:///{tmp_path}/empty.db"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("autotune: error: no runs in ") and "nothing to publish" in line
    store = f"sqlite:///{site[0].parent}/autotune.db"
    assert main(["publish", str(tmp_path / "out"), "--store", store, "--model", "nope"]) == 2
    assert "--model nope: no stored trial matches" in capsys.readouterr().err


@pytest.mark.browser
@pytest.mark.readme_claim("every published page is self-contained (no network)")
def test_the_site_loads_cleanly_in_chromium(chromium, site):
    out, _ = site
    for name in ("index.html", page_file("tiny", "host-cpu")):
        page = chromium.load(out / name)
        assert page.errors == [], page.errors
        assert page.requests == [], page.requests
    assert chromium.evaluate("document.querySelectorAll('g.change-point title').length") == 1
    assert chromium.evaluate("document.querySelectorAll('svg circle.run-point').length") == 48
