"""Model outputs on disk: what a worker or a remote device hands back, one ``.npz`` file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


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
