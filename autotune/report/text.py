"""Plain-text formatting that every renderer shares, so the Markdown, the page and the
chart tooltips word the same fact the same way."""

from __future__ import annotations

from autotune.outcome import MachineState
from autotune.report.facts import Recommendation
from autotune.trial import Trial


def fmt(value: float | None, pattern: str = "{:.3f}") -> str:
    return "-" if value is None else pattern.format(value)


def pp_pattern(points: float | None) -> str:
    # Fidelity-only runs drop by thousandths of a point; two decimals would print 0.00.
    return "{:.2f}" if points is None or points == 0 or abs(points) >= 0.1 else "{:.3f}"


def pp(fraction: float | None) -> str:
    """An accuracy drop (a fraction) in percentage points."""
    if fraction is None:
        return "-"
    return pp_pattern(fraction * 100).format(fraction * 100)


def mib(value: float | None) -> str:
    return "-" if value is None else f"{value / 2**20:.1f}"


def kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.0f}"


# The column header for ``machine_text``.
MACHINE_HEADER = "others / steal"


def judged_machine(trial: Trial) -> MachineState | None:
    """The machine's state during the pass a trial is judged by (its fastest)."""
    fastest = trial.fastest_pass
    return None if fastest is None else fastest.machine


def machine_text(trial: Trial) -> str:
    """Other processes' and the hypervisor's (steal) shares of the trial's cores during its
    judged pass, e.g. ``3% / 0%``; ``-`` where unknown."""
    machine = judged_machine(trial)
    if machine is None or machine.other_share is None:
        return "-"
    return f"{machine.other_share:.0%} / {fmt(machine.steal_share, '{:.0%}')}"


def limit_text(fraction: float) -> str:
    return f"{fraction * 100:g} pp"


def chosen_figures(recommendation: Recommendation) -> str:
    """The chosen config's headline figures, e.g. ``0.800 ms latency (2.50x vs fp32), ...``."""
    chosen = recommendation.chosen
    if chosen is None:
        return ""
    trial = chosen.trial
    return (f"{trial.latency_ms:.3f} ms latency"
            + (f" ({chosen.speedup:.2f}x vs fp32)" if chosen.speedup else "")
            + f", accuracy drop {pp(trial.accuracy_drop)} pp, memory "
              f"{mib(trial.memory_bytes)} MiB")


def miss_text(miss: float) -> str:
    return f"misses by {miss * 100:.2f} pp"
