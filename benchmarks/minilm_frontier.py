"""The latency / text-quality frontier of all-MiniLM-L6-v2 on this machine's CPU (OpenVINO).

Runs a search space (default ``transformer``) on the ``minilm`` zoo entry through the real
driver: every config quantized, compiled and measured in its own worker, scored by the
Spearman correlation of sentence-pair cosine similarities with the gold scores of
``autotune/zoo/data/sts_pairs.tsv``. Prints one row per config with its speedup over fp32,
its Spearman drop, and whether it is on the Pareto frontier. Needs ``pip install -e ".[zoo]"``.

    python benchmarks/minilm_frontier.py [--space transformer] [--store sqlite:///PATH]
        [--passes 3] [--out benchmarks/results]
    python benchmarks/minilm_frontier.py --store sqlite:///PATH --show RUN_ID   # reprint

``--passes N`` measures every config N times, each pass in its own shuffled order, so a
minutes-long slow spell of the machine hits one pass of a config, not all of them (a
config's latency is the median of its passes' samples pooled). ``--out DIR`` writes the
table to ``DIR/minilm_frontier-DATE.json`` (with ``--show``: a stored run's table).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from autotune.driver import RunSettings, execute_run, start_run
from autotune.errors import InputError
from autotune.outcome import FLOAT_FALLBACK
from autotune.pareto import frontier
from autotune.search import ExhaustiveSearch
from autotune.space import load_space
from autotune.store import Store
from autotune.target import load_target
from autotune.trial import Trial
from autotune.zoo import resolve_model

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.result_file import write_result  # noqa: E402

# What issue #26 asks of the frontier: a quantized config this close to fp32 and this fast.
MAX_RELATIVE_DROP = 0.01
MIN_SPEEDUP = 1.8


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--space", default="transformer")
    parser.add_argument("--target", default="host-cpu")
    parser.add_argument("--backend", default="openvino")
    parser.add_argument("--store", default=None,
                        help="keep the run in this store (default: a temporary one)")
    parser.add_argument("--show", metavar="RUN_ID", default=None,
                        help="print the table of a run already in --store, measuring nothing")
    parser.add_argument("--passes", type=int, default=1,
                        help="measurement passes per config, each in its own order (default 1)")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="also write the table to DIR/minilm_frontier-DATE.json")
    parser.add_argument("--suffix", default="", help="appended to the result file's name")
    args = parser.parse_args()
    if args.passes < 1:
        parser.error("--passes must be at least 1")
    if args.show:
        if not args.store:
            parser.error("--show needs --store")
        try:
            store = Store(args.store)
            run = store.get_run(args.show)
        except InputError as error:
            print(f"minilm_frontier: {error}", file=sys.stderr)
            return 2
        print(f"run {run.id}: {run.model}, space {run.space}; fp32 Spearman "
              f"{run.reference_accuracy:.4f}")
        rows = table_rows(store.trials(run.id))
        print_rows(rows)
        if args.out:
            path = save(args, run.id, run.space, run.reference_accuracy, rows,
                        run.settings.passes)
            print(f"wrote {path}")
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
        settings = RunSettings(backends=(args.backend,), workspace=workspace, progress=True,
                               passes=args.passes)
        run_id = start_run(store, model, space, [target], settings, ExhaustiveSearch())
        outcome = execute_run(store, run_id, space, [target], settings, ExhaustiveSearch())
        reference = store.get_run(run_id).reference_accuracy
    print(f"run {run_id}: minilm ({len(model.dataset.evaluation) // 2} sentence pairs, "
          f"{len(model.dataset.calibration)} calibration sentences), space {space.name}, "
          f"{args.backend} on {target.name}; fp32 Spearman {reference:.4f}")
    rows = table_rows(outcome.trials)
    print_rows(rows)
    print("spread = IQR / median of the latency samples; above 10% the report flags a trial "
          "noisy (a busy machine)")
    if args.out:
        print(f"wrote {save(args, run_id, space.name, reference, rows, args.passes)}")
    return 0 if outcome.succeeded else 1


def table_rows(trials: list[Trial]) -> list[dict]:
    """One row per config: speed and quality against the fp32 trial, frontier membership,
    and whether it meets the issue's bar (quantized, within 1% and at least 1.8x)."""
    ok = [trial for trial in trials if trial.ok]
    baseline = next((t for t in ok if t.config.is_float and t.config.weight_dtype == "fp32"),
                    None)
    front = {trial.config.id for trial in frontier(ok)}
    rows = []
    for trial in trials:
        row = {"config": trial.config.label, "text": trial.config.text, "id": trial.config.id,
               "status": trial.status}
        if not trial.ok:
            row["error"] = trial.error.splitlines()[0][:200] if trial.error else ""
            rows.append(row)
            continue
        speedup = (baseline.latency_median_ms / trial.latency_median_ms) if baseline else None
        relative = trial.accuracy_drop / baseline.accuracy if baseline else None
        row.update(median_ms=trial.latency_median_ms, spread=trial.latency_spread,
                   passes=max(1, len(trial.passes)), speedup=speedup, spearman=trial.accuracy,
                   drop=trial.accuracy_drop, relative_drop=relative,
                   on_frontier=trial.config.id in front,
                   meets=bool(trial.config.is_quantized and speedup is not None
                              and speedup >= MIN_SPEEDUP and relative is not None
                              and relative <= MAX_RELATIVE_DROP),
                   float_fallback=next((note.text for note in trial.notes
                                        if note.kind == FLOAT_FALLBACK), ""))
        rows.append(row)
    return rows


MEETS = f"  <- meets <={MAX_RELATIVE_DROP:.0%} drop, >={MIN_SPEEDUP}x"


def print_rows(rows: list[dict]) -> None:
    print(f"{'config':44} {'id':10} {'status':7} {'median ms':>9} {'spread':>6} "
          f"{'speedup':>7} {'Spearman':>8} {'drop':>7} {'rel.':>6}  frontier")
    for row in rows:
        if row["status"] != "ok":
            print(f"{row['config']:44} {row['id']:10} {row['status']:7} {row['error'][:70]}")
            continue
        print(f"{row['config']:44} {row['id']:10} {row['status']:7} "
              f"{row['median_ms']:9.2f} {row['spread']:6.1%} "
              f"{row['speedup'] or 0:6.2f}x {row['spearman']:8.4f} "
              f"{row['drop']:7.4f} {row['relative_drop'] or 0:6.2%}  "
              f"{'yes' if row['on_frontier'] else ''}"
              f"{MEETS if row['meets'] else ''}")


def save(args, run_id: str, space: str, reference: float, rows: list[dict],
         passes: int) -> Path:
    return write_result(args.out, "minilm_frontier", {
        "model": "minilm", "space": space, "target": args.target, "backend": args.backend,
        "run": run_id, "passes": passes, "fp32_spearman": reference,
        "bar": {"max_relative_drop": MAX_RELATIVE_DROP, "min_speedup": MIN_SPEEDUP},
        "met_by": [row["text"] for row in rows if row.get("meets")], "rows": rows},
        args.suffix)


if __name__ == "__main__":
    sys.exit(main())
