"""Throughput mode: inferences per second with the runtime kept busy, besides batch-1 latency.

A trial's latency is one synchronous request at a time; a server keeps the runtime busy with
many requests and batches. With ``autotune run --batch 1,8`` the trial's first worker, after
its latency samples, measures each batch size: OpenVINO under its ``THROUGHPUT`` performance
hint (its streams, its optimal number of asynchronous infer requests kept busy), TVM with
the model built for that batch. The figure is inferences completed over the wall time of a
timed window of at least ``min_time_s`` (and ``min_repeats`` requests), after warm-up runs,
under the same timing lock and on the same pinned cores as the latency samples. It is
measured in the first pass only (re-measures repeat the latency samples, not this).

Nothing here imports a runtime: the backends measure with the helpers here; the facts they
hand back are ``autotune.outcome.ThroughputFacts``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from autotune.errors import InputError
from autotune.machine_state import CONTENTION_LIMITS, snapshot, window
from autotune.measure import Feeds, MeasurementProtocol
from autotune.outcome import MachineState, ThroughputFacts, ThroughputPoint

# Distinct batches a window cycles through, so no cache sees one input repeated.
DISTINCT_BATCHES = 4


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,8"`` -> ``(1, 8)``; InputError naming ``--batch`` for anything else."""
    try:
        batches = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise InputError(f"--batch {text}: expected batch sizes such as 1,8") from None
    return check_batches(batches, "--batch")


def check_batches(batches: Sequence[int], where: str) -> tuple[int, ...]:
    """Positive, distinct batch sizes in the order given; InputError naming ``where``."""
    if any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in batches):
        raise InputError(f"{where}: batch sizes must be positive integers; got {list(batches)}")
    return tuple(dict.fromkeys(batches))


def batch_of(shapes: Sequence[Sequence[int | None]], requested: int) -> tuple[int, str]:
    """The batch a model with these input shapes (first dimension None: dynamic) runs at
    when ``requested`` is asked for, and a note where it is not the one asked for.

    The batch dimension is the first of every input; it can be set where each input's is 1
    or dynamic. A model whose first dimensions are fixed at another size keeps its own."""
    firsts = {shape[0] if shape else None for shape in shapes}
    if not shapes or any(not shape for shape in shapes):
        return 1, f"batch {requested} not set: an input has no batch dimension; ran at 1"
    if firsts <= {1, None}:
        return requested, ""
    fixed = {first for first in firsts if first not in (1, None)}
    if len(fixed) == 1:
        own = fixed.pop()
        return own, ("" if own == requested else
                     f"the model's batch is fixed at {own}; ran at {own}, not {requested}")
    return 1, f"batch {requested} not set: inputs disagree on their first dimension; ran at 1"


def batched_feeds(evaluation: Sequence[Feeds], batch: int, model_batch: int) -> list[Feeds]:
    """Up to ``DISTINCT_BATCHES`` different inputs of ``batch`` samples each, stacked from the
    evaluation inputs (each of the model's own batch ``model_batch``) along the first axis."""
    if batch == model_batch:
        return [dict(feeds) for feeds in evaluation[:DISTINCT_BATCHES]]
    if model_batch != 1:
        raise ValueError(f"cannot stack inputs of batch {model_batch} into batch {batch}")
    result = []
    for start in range(min(DISTINCT_BATCHES, len(evaluation))):
        picked = [evaluation[(start + i) % len(evaluation)] for i in range(batch)]
        result.append({name: np.ascontiguousarray(np.concatenate([f[name] for f in picked]))
                       for name in picked[0]})
    return result


def timed_window(submit: Callable[[int], None], wait_all: Callable[[], None],
                 protocol: MeasurementProtocol, warmup: int
                 ) -> tuple[int, float, MachineState]:
    """Submit ``warmup`` requests and wait for them (untimed); then submit requests
    (``submit(index)``, which may block while every request is busy) until at least
    ``protocol.min_time_s`` and ``min_repeats`` requests have passed (or ``max_time_s``),
    and wait for every one submitted. Returns (requests completed, wall seconds, the
    machine's state during the window: a neighbour on the cores shows there)."""
    for index in range(warmup):
        submit(index)
    wait_all()
    submitted = 0
    before = snapshot()
    began = time.perf_counter()
    while not protocol.window_done(submitted, time.perf_counter() - began):
        submit(submitted)
        submitted += 1
    wait_all()
    wall_s = time.perf_counter() - began
    return submitted, wall_s, window(before, snapshot())


def point(requested: int, batch: int, timed: tuple[int, float, MachineState], mode: str,
          note: str, streams: int | None = None, requests: int = 1) -> ThroughputPoint:
    """A measured point: ``timed_window``'s requests of ``batch`` inferences each."""
    requests_done, wall_s, machine = timed
    inferences = requests_done * batch
    return ThroughputPoint(requested=requested, batch=batch,
                           inferences_per_s=round(inferences / wall_s, 3) if wall_s else None,
                           inferences=inferences, wall_s=round(wall_s, 4), mode=mode,
                           streams=streams, requests=requests, note=note, machine=machine)


def contention_text(found: ThroughputPoint) -> str:
    """``" (contended: ...)"`` where the point's window was past the run's default contention
    limits (``autotune.machine_state``), so its figure may be the neighbour's; else ""."""
    if not CONTENTION_LIMITS.exceeded(found.machine):
        return ""
    return f" (contended: {found.machine.summary()})"


def each_batch(batches: Sequence[int],
               measure: Callable[[int], ThroughputPoint]) -> ThroughputFacts:
    """``measure`` each batch size; one that fails is its point's error, the others stand."""
    points = []
    for requested in batches:
        try:
            points.append(measure(requested))
        except Exception as error:  # noqa: BLE001 - one batch size's failure is its point
            points.append(failed_point(requested, error))
    return ThroughputFacts(tuple(points))


def failed_point(requested: int, error: BaseException) -> ThroughputPoint:
    """The point of a batch size the runtime could not run, with the first line of why
    (e.g. a graph whose Reshape fixes the batch at 1)."""
    text = str(error).strip()
    first = text.splitlines()[0] if text else ""
    return ThroughputPoint(requested=requested, batch=requested,
                           error=f"{type(error).__name__}: {first[:300]}")


def rebatch_onnx(source: Path, batch: int, path: Path) -> Path:
    """A copy of the ONNX model at ``source`` whose inputs take ``batch`` in their first
    dimension (its outputs' first dimension left to shape inference), for a compiler that
    builds per shape (TVM). A graph that fixes the batch inside (a Reshape to [1, ...])
    fails to build or is caught by the caller's check of the outputs' batch."""
    import onnx

    model = onnx.load(str(source))
    initializers = {tensor.name for tensor in model.graph.initializer}
    for value in model.graph.input:
        if value.name not in initializers and value.type.tensor_type.shape.dim:
            value.type.tensor_type.shape.dim[0].Clear()
            value.type.tensor_type.shape.dim[0].dim_value = batch
    for value in model.graph.output:
        if value.type.tensor_type.shape.dim:
            value.type.tensor_type.shape.dim[0].Clear()
            value.type.tensor_type.shape.dim[0].dim_param = "batch"
    del model.graph.value_info[:]
    onnx.save(model, str(path))
    return path
