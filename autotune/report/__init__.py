"""Reports: the facts of a run gathered once (``facts``), rendered as a Markdown summary
(``markdown``), a CSV of every trial (``table``), a frontier plot (``plot``) and a
self-contained HTML page (``html``, with its SVG charts in ``charts`` and ``svg``).

Only gathering reads the store; every renderer formats the same ``RunFacts``, so the
summary, the page and the CSV cannot disagree about a recommendation or a flag.
"""

from __future__ import annotations

from pathlib import Path

from autotune.report.facts import (
    DEFAULT_MAX_DROP,
    RunFacts,
    gather,
    gather_from_store,
    reproduce_command,
)
from autotune.report.html import write_html
from autotune.report.markdown import render_markdown
from autotune.report.plot import write_plot
from autotune.report.table import write_csv
from autotune.store import Store

__all__ = ["DEFAULT_MAX_DROP", "RunFacts", "gather", "gather_from_store", "render_markdown",
           "reproduce_command", "write_report", "write_rendered"]


def write_report(store: Store, run_id: str | None, report_dir: Path) -> Path:
    """Render the report of a run (the latest when ``run_id`` is None); returns its folder."""
    facts = gather_from_store(store, run_id)
    return write_rendered(facts, Path(report_dir) / facts.run.id)


def write_rendered(facts: RunFacts, out: Path) -> Path:
    """Write every rendering of ``facts`` into the folder ``out``; returns it."""
    out.mkdir(parents=True, exist_ok=True)
    write_csv(facts, out / "trials.csv")
    plot = write_plot(facts, out / "frontier.png")
    (out / "summary.md").write_text(render_markdown(facts, plot.name if plot else None))
    write_html(facts, out)
    return out
