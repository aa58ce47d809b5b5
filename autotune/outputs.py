"""Model outputs on disk: what a worker or a remote device hands back, one ``.npz`` file;
and the outputs a run records per trial, which ``autotune verify`` compares an export with."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# A trial's recorded outputs: those of the first evaluation inputs, few enough to keep for
# every trial and to ship with an export, and enough that a changed kernel shows.
RECORDED_COUNT = 16


def recorded_outputs_path(run_dir: Path, config_id: str, backend: str, target: str) -> Path:
    """Where a run keeps the outputs a trial's measurement gave (``RECORDED_COUNT`` inputs)."""
    return Path(run_dir) / "outputs" / f"{config_id}-{backend}-{target}.npz"


def load_outputs(file) -> list[list[np.ndarray]]:
    """The outputs ``save_outputs`` wrote (a path or a binary file)."""
    with np.load(file) as data:
        width = int(data["width"])
        return [[data[f"s{index}_o{out}"] for out in range(width)]
                for index in range(int(data["count"]))]


def save_outputs(path: Path, outputs: list[list[np.ndarray]]) -> None:
    """Write ``outputs`` (per evaluation input, one array per model output) to ``path``."""
    arrays = {f"s{index}_o{out}": value for index, sample in enumerate(outputs)
              for out, value in enumerate(sample)}
    np.savez(path, count=len(outputs), width=len(outputs[0]) if outputs else 0, **arrays)
