"""Two runtime versions side by side in one command: every TVM trial succeeds in both.

    python benchmarks/side_by_side.py [--old openvino==2025.4.0] [--space default]
                                      [--model FILE|ZOO] [--tuning-trials 8] [--passes 2]

Writes a run file with ``runtimes = ["installed", OLD]`` (the space, host-cpu, OpenVINO and
TVM), runs it as a nightly job would (``autotune run -f FILE --json``, one fresh process, its
own store), then ``autotune compare`` between the two cells. The runtime environment for
``OLD`` must carry TVM, nncf and the rest as pinned on the host, so every TVM trial succeeds
in both environments and ``compare`` reports no ``stopped_compiling``.

The default model is the tests' tiny CNN (2 convolutions on 1x3x16x16, fidelity against
fp32): untuned or lightly tuned TVM measures it in seconds, where digits-cnn's 500-image
accuracy pass takes minutes per untuned trial.

Prints a table per environment and backend (trials, succeeded, statuses) and compare's
findings. The target: every TVM trial has the same status in both environments, ``ok`` or,
for a precision this CPU lacks (bf16 without its instructions), ``unsupported``; and
``compare`` finds no ``stopped_compiling``. Writes benchmarks/results/side_by_side-DATE.json
(date, host, versions, every trial's status); the log is the printed output.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from autotune.cli.common import print_table  # noqa: E402
from autotune.testing.models import tiny_cnn  # noqa: E402
from benchmarks.result_file import write_result  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", default="openvino==2025.4.0")
    parser.add_argument("--space", default="default")
    parser.add_argument("--model", default=None,
                        help="zoo name or ONNX file (default: the tests' tiny CNN)")
    parser.add_argument("--tuning-trials", type=int, default=8)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="autotune-side-by-side-") as scratch:
        scratch = Path(scratch)
        model = args.model or str(tiny_cnn(scratch / "tiny-cnn.onnx"))
        run_file = scratch / "side-by-side.toml"
        run_file.write_text(
            f'spaces = [{json.dumps(args.space)}]\n'
            'targets = ["host-cpu"]\n'
            'backends = ["openvino", "tvm"]\n'
            f'runtimes = ["installed", {json.dumps(args.old)}]\n'
            f'tuning_trials = {args.tuning_trials}\n'
            f'passes = {args.passes}\n'
            f'models = [{json.dumps(model)}]\n')
        env = {**os.environ, "AUTOTUNE_STORE": f"sqlite:///{scratch / 'store.db'}"}
        campaign = _autotune(["run", "-f", str(run_file), "--json", "--no-progress",
                              "--report-dir", str(scratch / "reports")], env)
        runs = [cell["run_id"] for cell in campaign["cells"]]
        if len(runs) != 2 or None in runs:
            print(f"a cell did not run: {campaign['cells']}", file=sys.stderr)
            return 1
        verdict = _autotune(["compare", runs[0], runs[1], "--json"], env, ok=(0, 1))
    rows = [row for side, label in (("baseline", "installed"), ("candidate", args.old))
            for row in _side_rows(verdict, side, label)]
    print_table(["runtime", "backend", "trials", "succeeded", "statuses"], rows)
    findings = collections.Counter(finding["kind"] for pair in verdict["trials"]
                                   for finding in pair["findings"])
    # bf16 is `unsupported` where the CPU has no bf16 instructions, in either environment:
    # a TVM trial fails the target by any other failure, or by a status that differs.
    tvm = [pair for pair in verdict["trials"] if pair["backend"] == "tvm"]
    every_tvm_ok = (bool(tvm) and not verdict["only_in_baseline"]
                    and not verdict["only_in_candidate"]
                    and all(pair["baseline_status"] == pair["candidate_status"]
                            in ("ok", "unsupported") for pair in tvm)
                    and any(pair["candidate_status"] == "ok" for pair in tvm))
    stopped = findings.get("stopped_compiling", 0)
    print(f"\ncompare {runs[0]} -> {runs[1]}: {len(verdict['trials'])} matched trials; "
          f"findings: {dict(findings) or 'none'}; version changes: "
          + ", ".join(f"{name} {change['baseline']} -> {change['candidate']}"
                      for name, change in verdict["version_changes"].items()))
    met = every_tvm_ok and stopped == 0
    seconds = round(time.monotonic() - began)
    print(f"target (every TVM trial that the CPU supports succeeds in both environments, "
          f"no stopped_compiling): "
          f"{'met' if met else 'NOT met'}; {seconds} s")

    path = write_result(args.out, "side_by_side", {
        "old": args.old, "space": args.space,
        "model": args.model or "tiny-cnn (autotune.testing.models)",
        "tuning_trials": args.tuning_trials, "passes": args.passes,
        "campaign": campaign, "rows": rows, "findings": dict(findings),
        "version_changes": verdict["version_changes"],
        "trials": [{key: pair[key] for key in ("config_text", "backend", "baseline_status",
                                               "candidate_status")} | {
                    "findings": [f["kind"] for f in pair["findings"]]}
                   for pair in verdict["trials"]],
        "met": met, "seconds": seconds})
    print(f"wrote {path}")
    return 0 if met else 1


def _autotune(argv: list[str], env: dict, ok: tuple[int, ...] = (0,)) -> dict:
    """Runs the installed CLI in a fresh process; its JSON on stdout, its log on stderr."""
    done = subprocess.run([sys.executable, "-m", "autotune", *argv], env=env, text=True,
                          stdout=subprocess.PIPE, cwd=ROOT)
    if done.returncode not in ok:
        raise SystemExit(f"autotune {' '.join(argv)} exited {done.returncode}")
    return json.loads(done.stdout)


def _side_rows(verdict: dict, side: str, runtime: str) -> list[list]:
    """One row per backend of one side of the comparison: trials, how many succeeded, and
    every status seen (unmatched trials count too)."""
    trials = [{"backend": pair["backend"], "status": pair[f"{side}_status"]}
              for pair in verdict["trials"]] + verdict[f"only_in_{side}"]
    rows = []
    for backend in ("openvino", "tvm"):
        statuses = collections.Counter(t["status"] for t in trials if t["backend"] == backend)
        rows.append([runtime, backend, sum(statuses.values()), statuses.get("ok", 0),
                     ", ".join(f"{status} {count}" for status, count in sorted(statuses.items()))])
    return rows


if __name__ == "__main__":
    sys.exit(main())
