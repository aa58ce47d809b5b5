"""Scheduling trials over targets: every target measures its own trials, all targets at once.

A device measures one trial at a time (two measurements on one device disturb each other),
but an ARM board, a GPU server and this host are different devices: a run over several
targets gives each its own thread, which feeds the usual isolated worker one trial after
another. Results come back to the caller's thread in the order they finish, so the store
and the progress bar are touched by one thread only.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from autotune.search import Candidate
from autotune.worker import kill_in_flight

T = TypeVar("T")


def per_target(batch: Sequence[Candidate], measure: Callable[[Candidate], T],
               in_flight: set[Candidate]) -> Iterator[tuple[Candidate, T]]:
    """Measure ``batch``, each target's candidates in order, different targets in parallel.

    Yields (candidate, result) as results arrive. ``in_flight`` holds the candidates being
    measured; the caller removes a candidate once it has stored its result. Closing the
    iterator early (an interrupt) kills the workers in flight and drops their results.
    """
    by_target: dict[str, list[Candidate]] = {}
    for candidate in batch:
        by_target.setdefault(candidate.target.name, []).append(candidate)
    if len(by_target) <= 1:  # one device: no thread needed
        for candidate in batch:
            in_flight.add(candidate)
            yield candidate, measure(candidate)
        return
    results: queue.Queue = queue.Queue()
    stop = threading.Event()

    def work(candidates: list[Candidate]) -> None:
        for candidate in candidates:
            if stop.is_set():
                break
            in_flight.add(candidate)
            try:
                results.put((candidate, measure(candidate), None))
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller's thread
                results.put((candidate, None, error))
                break
        results.put(None)

    threads = [threading.Thread(target=work, args=(candidates,), daemon=True,
                                name=f"target-{name}")
               for name, candidates in by_target.items()]
    for thread in threads:
        thread.start()
    finished = 0
    try:
        while finished < len(threads):
            try:
                item = results.get(timeout=0.2)  # a timeout keeps Ctrl-C responsive
            except queue.Empty:
                continue
            if item is None:
                finished += 1
                continue
            candidate, result, error = item
            if error is not None:
                raise error
            yield candidate, result
    finally:
        stop.set()
        if finished < len(threads):
            kill_in_flight()
        for thread in threads:
            thread.join(timeout=30)
