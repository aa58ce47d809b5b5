"""The latency / text-quality frontier of all-MiniLM-L6-v2 on this machine's CPU (OpenVINO).

Runs a search space (default ``transformer``) on the ``minilm`` zoo entry through the real
driver: every config quantized, compiled and measured in its own worker, scored by the
Spearman correlation of sentence-pair cosine similarities with the gold scores of
``autotune/zoo/data/sts_pairs.tsv``. Prints one row per config with its speedup over fp32,
its Spearman drop, and whether it is on the Pareto frontier. Needs ``pip install -e ".[zoo]"``.

    python benchmarks/minilm_frontier.py [--space transformer] [--store sqlite:///PATH]
    python benchmarks/minilm_frontier.py --store sqlite:///PATH --show RUN_ID   # reprint
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from autotune.driver import RunSettings, execute_run, start_run
from autotune.errors import InputError
from autotune.pareto import frontier
from autotune.search import ExhaustiveSearch
from autotune.space import load_space
from autotune.store import Store
from autotune.target import load_target
from autotune.trial import Trial
from autotune.zoo import resolve_model

# What the issue asks of the frontier: a quantized config this close to fp32 and this fast.
MAX_RELATIVE_DROP = 0.01
MIN_SPEEDUP = 1.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="transformer")
    parser.add_argument("--target", default="host-cpu")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--store", default=None,
                        help="keep the run in this store (default: a temporary one)")
    parser.add_argument("--show", metavar="RUN_ID", default=None,
                        help="print the table of a run already in --store, measuring nothing")
    args = parser.parse_args()
    if args.show:
        if not args.store:
            parser.error("--show needs --store")
        store = Store(args.store)
        run = store.get_run(args.show)
        print(f"run {run.id}: {run.model}, space {run.space}; fp32 Spearman "
              f"{run.reference_accuracy:.4f}")
        print_table(store.trials(run.id))
        return 0
    try:
        model = resolve_model("minilm")
    except InputError as error:
        print(f"minilm_frontier: {error}", file=sys.stderr)
        return 2
    space = load_space(args.space)
    target = load_target(args.target)
    with tempfile.TemporaryDirectory() as scratch:
        url = args.store or f"sqlite:///{scratch}/minilm.db"
        workspace = Path(url.removeprefix("sqlite:///")).parent if url.startswith(
            "sqlite:///") else Path(scratch)
        store = Store(url)
        settings = RunSettings(backends=(args.backend,), workspace=workspace, progress=True)
        run_id = start_run(store, model, space, [target], settings, ExhaustiveSearch())
        outcome = execute_run(store, run_id, space, [target], settings, ExhaustiveSearch())
        reference = store.get_run(run_id).reference_accuracy
    print(f"run {run_id}: minilm ({len(model.dataset.evaluation) // 2} sentence pairs, "
          f"{len(model.dataset.calibration)} calibration sentences), space {space.name}, "
          f"{args.backend} on {target.name}; fp32 Spearman {reference:.4f}")
    print_table(outcome.trials)
    print("spread = IQR / median of the latency samples; above 10% the report flags a trial "
          "noisy (a busy machine)")
    return 0 if outcome.succeeded else 1


def print_table(trials: list[Trial]) -> None:
    """One row per config: speed and quality against fp32, frontier membership."""
    ok = [trial for trial in trials if trial.ok]
    baseline = next((t for t in ok if t.config.is_float and t.config.weight_dtype == "fp32"),
                    None)
    front = {trial.config.id for trial in frontier(ok)}
    print(f"{'config':44} {'id':10} {'status':7} {'median ms':>9} {'spread':>6} "
          f"{'speedup':>7} {'Spearman':>8} {'drop':>7} {'rel.':>6}  frontier")
    for trial in trials:
        if not trial.ok:
            print(f"{trial.config.label:44} {trial.config.id:10} {trial.status:7} "
                  f"{trial.error.splitlines()[0][:70] if trial.error else ''}")
            continue
        speedup = (baseline.latency_median_ms / trial.latency_median_ms) if baseline else None
        relative = trial.accuracy_drop / baseline.accuracy if baseline else None
        meets = (trial.config.is_quantized and speedup is not None and speedup >= MIN_SPEEDUP
                 and relative is not None and relative <= MAX_RELATIVE_DROP)
        print(f"{trial.config.label:44} {trial.config.id:10} {trial.status:7} "
              f"{trial.latency_median_ms:9.2f} {trial.latency_spread:6.1%} "
              f"{speedup or 0:6.2f}x {trial.accuracy:8.4f} "
              f"{trial.accuracy_drop:7.4f} {relative or 0:6.2%}  "
              f"{'yes' if trial.config.id in front else ''}"
              f"{'  <- meets <=1% drop, >=1.5x' if meets else ''}")


if __name__ == "__main__":
    sys.exit(main())
