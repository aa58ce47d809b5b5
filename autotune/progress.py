"""A run's progress for whoever watches it: a redrawn bar on a terminal, one line per finished
trial where stderr is a log file (a CI job), nothing when progress is off.

The bar names the trial being measured and, apart, the last finished trial with its result,
so a latency never sits next to another trial's name.
"""

from __future__ import annotations

import sys
from typing import TextIO

from autotune.trial import Trial


def trial_label(trial: Trial) -> str:
    return f"{trial.config.label} ({trial.config.id}) on {trial.backend}/{trial.target}"


def trial_result(trial: Trial) -> str:
    """The status, and the latency of a successful trial."""
    if trial.ok and trial.latency_ms is not None:
        return f"ok {trial.latency_ms:.4f} ms"
    return trial.status


def pass_result(trial: Trial) -> str:
    """The status and median latency of the trial's last measurement pass."""
    last = trial.passes[-1]
    return f"ok {last.median_ms:.4f} ms" if last.ok else last.status


class TrialProgress:
    """Progress over ``total`` trials (``stage`` prefixes each line, e.g. ``pass 2/3``)."""

    def __init__(self, total: int, enabled: bool, stage: str = "",
                 stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total, self.done, self.stage = total, 0, stage
        self.lines = enabled and not _is_terminal(self.stream)
        self.bar = None
        if enabled and not self.lines:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="trial", file=self.stream, dynamic_ncols=True,
                            leave=True, desc=stage or None)

    def started(self, label: str) -> None:
        """A trial began: the bar says which (a log gets its line when it ends)."""
        if self.bar is not None:
            self.bar.set_description(f"{self.stage} measuring {label}".strip()[:70])

    def finished(self, trial: Trial, counted: bool = True, result: str | None = None) -> None:
        """A trial ended; ``counted``: it used up one of ``total``; ``result``: what to show
        instead of the trial's own status and latency (one pass's)."""
        self.done += counted
        result = result or trial_result(trial)
        if self.bar is not None:
            self.bar.set_postfix_str(f"last: {trial.config.label}/{trial.backend}/"
                                     f"{trial.target} {result}", refresh=False)
            if counted:
                self.bar.update(1)
            else:
                self.bar.refresh()
        elif self.lines:
            stage = f"{self.stage} " if self.stage else ""
            print(f"{stage}[{self.done}/{self.total}] {trial_label(trial)}: {result}",
                  file=self.stream, flush=True)

    def note(self, text: str) -> None:
        """A line about the run itself (e.g. why the search stopped early)."""
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        elif self.lines:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream: not a terminal
        return False
