"""``autotune run --predict-only``: the predicted frontier of a model, measuring nothing.

The cost model trains on every trial in the store (``autotune.transfer``), predicts every
candidate of the space for the model, targets and backends (of a space larger than
``search.POOL_SIZE``, the pool guided search would rank first), and the command prints the
predicted front per target and backend with the budget guided search expects to need
(``autotune.predict``). The predictions are stored (run id none, stage "predict-only") so
the report of a later run of the model can say how far they were from its measurements.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from autotune.cli.common import print_json, print_table, workspace_for
from autotune.errors import InputError
from autotune.settings import DEFAULT_CONVERGENCE, RunSpec
from autotune.store import Store


def predict_only(args, store: Store, spec: RunSpec, say) -> int:
    from autotune.cli.one_run import load_names
    from autotune.costmodel import XGBoostCostModel
    from autotune.driver import space_candidates
    from autotune.graph import analyze
    from autotune.hostlock import SHARED, host_lock
    from autotune.predict import candidate_workloads, predict_space, predicted_front
    from autotune.quantize import file_hash
    from autotune.search import SEEDS, diverse_seeds, ranking_pool
    from autotune.sensitivity import expand_mixed
    from autotune.store import PREDICT_ONLY
    from autotune.transfer import remember_profile, training_set
    from autotune.zoo import resolve_model

    if args.resume:
        raise InputError("--predict-only measures nothing and takes no --resume")
    space, targets = load_names(spec)
    rows = training_set(store, targets)
    if not rows.learnable():
        raise InputError(f"--predict-only: {store.shown_url} holds no successful trial to "
                         f"learn from; measure a run first (autotune run)")
    model = resolve_model(spec.model, None if spec.data is None else Path(spec.data),
                          spec.metric, spec.shapes)
    if space.size is None:  # [mixed] or [per_layer]: the configs come from the model
        with host_lock(SHARED, "scan layer sensitivity"):  # mixed configs need the ranking
            space = expand_mixed(space, model.path, model.dataset,
                                 workspace_for(args.store) / "cache").space
    from autotune.backends import backend_names

    candidates, unavailable = space_candidates(space, targets,
                                               spec.backends or backend_names())
    if not candidates:
        raise InputError("--predict-only: no candidate can run here (every backend is "
                         "unavailable on the targets; see autotune doctor)")
    started = time.perf_counter()
    cost_model = XGBoostCostModel(seed=spec.seed)
    cost_model.fit(rows.workloads, rows.trials)
    fit_s = time.perf_counter() - started
    threshold = spec.until_converged or DEFAULT_CONVERGENCE
    pool = ranking_pool(candidates, spec.seed)
    workloads = candidate_workloads(analyze(model.path), pool, store)
    found = predict_space(cost_model, workloads, pool, diverse_seeds(pool, SEEDS, spec.seed),
                          threshold=threshold, trained_on=len(rows.trials), models=rows.models)
    model_hash = file_hash(model.path)
    remember_profile(store, model_hash, model.name, model.path)
    predictions = found.predictions(None, model_hash, PREDICT_ONLY)
    store.add_predictions(predictions)
    front = predicted_front(predictions)
    document = {
        "model": model.name, "model_hash": model_hash, "model_version": found.model_version,
        "trained_on": found.trained_on, "models": found.models, "fit_s": round(fit_s, 3),
        "skipped": rows.skipped, "candidates": len(candidates), "predicted": len(pool),
        "unavailable": len(unavailable), "expected_budget": found.expected_budget,
        "threshold": threshold,
        "front": [{"config": p.config.text, "config_id": p.config.id, "backend": p.backend,
                   "target": p.target, "latency_ms": p.latency_ms,
                   "latency_interval_ms": [p.latency_low_ms, p.latency_high_ms],
                   "fidelity_error": p.fidelity_error, "accuracy_drop": p.accuracy_drop,
                   "memory_bytes": p.memory_bytes,
                   "failure_probability": p.failure_probability} for p in front]}
    if args.json:
        print_json(document)
        return 0
    print(f"predicted front of {model.name} (nothing measured): cost model trained on "
          f"{found.trained_on} stored trials of {found.models} model"
          f"{'' if found.models == 1 else 's'} in {fit_s:.1f} s", file=say)
    print_table(["target", "backend", "config", "latency ms", "interval ms", "fidelity error",
                 "accuracy drop", "memory MiB", "p(fail)"],
                [[p.target, p.backend, p.config.label,
                  f"{p.latency_ms:.3f}", f"{p.latency_low_ms:.3f}-{p.latency_high_ms:.3f}",
                  f"{p.fidelity_error:.2e}", f"{p.accuracy_drop:.4f}",
                  f"{p.memory_bytes / 2**20:.1f}", f"{p.failure_probability:.2f}"]
                 for p in front])
    drawn = (f"; {len(pool):,} of the space's {len(candidates):,} candidates predicted (its "
             f"baselines and a seeded draw: the pool guided search ranks first)"
             if len(pool) < len(candidates) else "")
    print(f"expected budget of guided search: {found.expected_budget} of {len(pool):,} "
          f"candidates (its seeds and fp32 baselines, and every candidate whose optimistic "
          f"hypervolume improvement is above {threshold:.2%} of the predicted front's)"
          f"{drawn}", file=say)
    if unavailable:
        print(f"{len(unavailable)} candidates left out: their backend cannot reach the "
              f"target here", file=say)
    print(f"{len(predictions)} predictions stored in {store.shown_url} (stage predict-only)",
          file=sys.stderr)
    return 0
