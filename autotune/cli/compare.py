"""``autotune compare``: what got slower, larger, less accurate or broken between two runs."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

from autotune.cli.common import (
    add_store_option,
    markdown_table,
    open_store,
    print_json,
    print_table,
    runtime_python,
)
from autotune.cli.junit import Case, Suite, write_suites
from autotune.drift import DriftItem, frontier_drift
from autotune.errors import InputError
from autotune.outcome import CONTENDED
from autotune.regress import (
    UNAVAILABLE_KIND,
    Comparison,
    Thresholds,
    TrialComparison,
    compare_trials,
    version_changes,
)
from autotune.store import Run
from autotune.trial import Trial


def add_parser(commands) -> None:
    from autotune.paired import DEFAULT_ROUNDS

    parser = commands.add_parser(
        "compare", help="regressions between two runs (e.g. two runtime versions)",
        description="Compare every trial of CANDIDATE with the same model, config, backend and "
                    "target in BASELINE. Latency is judged on each trial's fastest measurement "
                    "pass (slower passes carry the machine's slow spells; base ms and cand ms "
                    "are those passes' medians). A latency regression is significant "
                    "(Mann-Whitney U and a bootstrap interval of the ratio of medians), beyond "
                    "the run-to-run noise that the runs' measurement passes show (the noise "
                    "column), and beyond --threshold. A pair with a side whose fastest pass "
                    "was measured under contention (autotune run --max-other-cpu/--max-steal) "
                    "gets the finding 'contended' instead of a latency verdict. "
                    "Exits 1 when any regression is found.")
    parser.add_argument("baseline", metavar="BASELINE",
                        help="run id of the baseline (or previous: the run before the latest)")
    parser.add_argument("candidate", metavar="CANDIDATE",
                        help="run id of the candidate (or latest)")
    add_threshold_options(parser)
    parser.add_argument("--paired", nargs="?", const="all", choices=("all", "suspect"),
                        default=None,
                        help="measure the matched ok trials again, baseline and candidate "
                             "alternately in the same time window (each in its own worker "
                             "and runtime), and judge the paired rounds (autotune.paired): "
                             "'all' (the default) every pair, 'suspect' only those whose "
                             "samples look slower or that were contended; the paired verdict "
                             "replaces the samples' latency verdict (contended included) for "
                             "the pairs it measured")
    parser.add_argument("--rounds", type=int, default=None, metavar="N",
                        help=f"round pairs of --paired (default: {DEFAULT_ROUNDS})")
    parser.add_argument("--format", choices=FORMATS, default="text",
                        help="text (default), json, or markdown (a table for a pull-request "
                             "comment or a CI job summary)")
    parser.add_argument("--json", action="store_true", help="print JSON (--format json)")
    add_junit_option(parser)
    add_store_option(parser)
    parser.set_defaults(handler=handle)


FORMATS = ("text", "json", "markdown")


def add_junit_option(parser) -> None:
    parser.add_argument("--junit", type=Path, default=None, metavar="FILE",
                        help="also write JUnit XML: one test case per compared trial, a "
                             "failure per regression")


def add_threshold_options(parser) -> None:
    """The minimum effects, shared with ``autotune history``."""
    defaults = Thresholds()
    parser.add_argument("--threshold", type=float, default=defaults.latency, metavar="FRACTION",
                        help="smallest latency change that counts (default: "
                             f"{defaults.latency:g} = {defaults.latency * 100:g}%%)")
    parser.add_argument("--accuracy-threshold", type=float, default=defaults.accuracy_pp,
                        metavar="PP",
                        help="smallest accuracy (or fidelity) loss that counts, in percentage "
                             f"points (default: {defaults.accuracy_pp:g})")
    parser.add_argument("--memory-threshold", type=float, default=defaults.memory,
                        metavar="FRACTION",
                        help="smallest memory or artifact size change that counts (default: "
                             f"{defaults.memory:g})")
    parser.add_argument("--alpha", type=float, default=defaults.alpha,
                        help="significance level of the latency test (default: "
                             f"{defaults.alpha:g})")


def thresholds_from(args) -> Thresholds:
    """The ``Thresholds`` the options ask for; bad values are input errors."""
    for option, value in (("--threshold", args.threshold),
                          ("--accuracy-threshold", args.accuracy_threshold),
                          ("--memory-threshold", args.memory_threshold)):
        if not value >= 0:
            raise InputError(f"{option}: must not be negative; got {value}")
    if not 0 < args.alpha < 1:
        raise InputError(f"--alpha: must be between 0 and 1; got {args.alpha}")
    return Thresholds(latency=args.threshold, memory=args.memory_threshold,
                      size=args.memory_threshold, accuracy_pp=args.accuracy_threshold,
                      alpha=args.alpha)


@dataclass(frozen=True)
class Verdict:
    """Two runs compared, as every output reports them: the samples' findings and, for the
    pairs measured again side by side (``--paired``), the paired result (by ``id(pair)``)."""

    baseline: Run
    candidate: Run
    comparison: Comparison
    thresholds: Thresholds
    paired: dict = field(default_factory=dict)
    paired_mode: str | None = None
    drift: tuple[DriftItem, ...] = ()  # how the candidate moved the frontier and the pick

    @property
    def regressions(self) -> list:
        return _regressions(self.comparison, self.paired)


def judge(store, url: str, baseline: Run, candidate: Run, thresholds: Thresholds,
          paired: str | None = None, rounds: int | None = None) -> Verdict:
    """Compare ``candidate`` with ``baseline`` (``autotune compare``, and a gated ``autotune
    run``). Two runs with trials and none comparable are bad input."""
    base_trials, cand_trials = store.trials(baseline.id), store.trials(candidate.id)
    comparison = compare_trials(base_trials, cand_trials, thresholds)
    if not comparison.matched and base_trials and cand_trials:
        raise InputError(f"runs {baseline.id} ({_model(baseline)}) and {candidate.id} "
                         f"({_model(candidate)}) have no comparable trial: "
                         f"{_why_unpaired(base_trials, cand_trials)}")
    results = {}
    if paired:
        results = measure_pairs(store, url, baseline, candidate, comparison, thresholds,
                                paired, rounds)
    from autotune.report.facts import DEFAULT_MAX_DROP

    drift = tuple(frontier_drift(base_trials, cand_trials, DEFAULT_MAX_DROP))
    return Verdict(baseline, candidate, comparison, thresholds, results, paired, drift)


def handle(args) -> int:
    thresholds = thresholds_from(args)
    store = open_store(args.store)
    verdict = judge(store, args.store, store.get_run(args.baseline),
                    store.get_run(args.candidate), thresholds, args.paired, args.rounds)
    output = "json" if args.json else args.format
    if output == "json":
        print_json(verdict_json(verdict))
    elif output == "markdown":
        print(markdown(verdict))
    else:
        print_verdict(verdict)
    if args.junit is not None:
        write_verdict_junit(args.junit, verdict)
    return 1 if verdict.regressions else 0


def print_verdict(verdict: Verdict) -> None:
    print_text(verdict.baseline, verdict.candidate, verdict.comparison, verdict.thresholds)
    if verdict.paired_mode:
        print_paired(verdict.comparison, verdict.paired, verdict.paired_mode)
    print(f"\nfrontier drift: {len(verdict.drift) or 'none'}")
    for item in verdict.drift:
        print(f"  {item.text}")


def verdict_json(verdict: Verdict) -> dict:
    data = as_json(verdict.baseline, verdict.candidate, verdict.comparison, verdict.thresholds)
    for entry, pair in zip(data["trials"], verdict.comparison.matched, strict=True):
        result = verdict.paired.get(id(pair))
        entry["paired"] = None if result is None else _paired_json(result)
    data["regressions"] = len(verdict.regressions)
    data["frontier_drift"] = [item.to_json() for item in verdict.drift]
    return data


def markdown(verdict: Verdict) -> str:
    """The comparison as Markdown: the runs, the table ``print_text`` prints, the
    regressions."""
    baseline, candidate = verdict.baseline, verdict.candidate
    changes = _changes(baseline, candidate)
    regressions = verdict.regressions
    lines = [f"### autotune: {len(regressions)} regression(s) in "
             f"{len(verdict.comparison.matched)} comparable trials",
             "", f"baseline `{baseline.id}` ({_model(baseline)}), candidate `{candidate.id}` "
             f"({_model(candidate)}); versions: "
             + (", ".join(f"{name} {old or '-'} → {new or '-'}"
                          for name, (old, new) in changes.items()) or "identical"),
             "", markdown_table(*_table(verdict.comparison, verdict.thresholds))]
    if regressions:
        lines += ["", "**Regressions:**", ""]
        lines += [f"- `{_pair_name(pair)}`: " + (f"{finding.kind}: {finding.detail}" if finding
                                                 else "paired re-measurement: slower or failed")
                  for pair, finding in regressions]
    if verdict.drift:
        lines += ["", "**Frontier drift:**", ""]
        lines += [f"- {item.text}" for item in verdict.drift]
    unavailable = unavailable_pairs(verdict.comparison)
    if unavailable:
        lines += ["", "**Not compared, a backend could not run (not regressions):**", ""]
        lines += [f"- `{_pair_name(pair)}`: {finding.detail}" for pair, finding in unavailable]
    return "\n".join(lines)


def unavailable_pairs(comparison: Comparison) -> list:
    """The pairs with a side whose backend could not run (``unavailable``), with the
    finding that says which side and why."""
    return [(pair, finding) for pair in comparison.matched for finding in pair.findings
            if finding.kind == UNAVAILABLE_KIND]


def write_verdict_junit(path: Path, verdict: Verdict) -> Path:
    """One test case per compared trial, failed by its regressions; trials of one run only
    are skipped cases."""
    return write_suites(path, [verdict_suite(verdict)])


def verdict_suite(verdict: Verdict) -> Suite:
    """The JUnit test suite of a comparison (``write_verdict_junit``)."""
    found: dict[int, list[str]] = {}
    for pair, finding in verdict.regressions:
        found.setdefault(id(pair), []).append(
            f"{finding.kind}: {finding.detail}" if finding
            else "paired re-measurement: slower or failed")
    classname = f"autotune.{verdict.candidate.model}"
    cases = [Case(_pair_name(pair), classname,
                  failure="\n".join(found[id(pair)]) if id(pair) in found else None,
                  output=", ".join(f"{f.kind}: {f.detail}" for f in pair.findings))
             for pair in verdict.comparison.matched]
    for title, trials in (("only in baseline", verdict.comparison.only_baseline),
                          ("only in candidate", verdict.comparison.only_candidate)):
        cases += [Case(_trial_name(trial), classname, skipped=f"{title} ({trial.status})")
                  for trial in trials]
    return Suite(f"compare {verdict.baseline.id} {verdict.candidate.id}", cases)


def _pair_name(pair: TrialComparison) -> str:
    return _trial_name(pair.candidate)


def _trial_name(trial) -> str:
    return f"{trial.config.label} ({trial.config.id}) {trial.backend}/{target_label(trial)}"


def _suspect(pair: TrialComparison, threshold: float) -> bool:
    """The samples say slower, or point that way by at least the threshold (significant or
    not), or a side was measured under contention: worth measuring again side by side."""
    latency = pair.latency
    return latency is not None and (any(f.kind in ("slower", CONTENDED) for f in pair.findings)
                                    or latency.ratio >= 1.0 + threshold)


def measure_pairs(store, url: str, baseline: Run, candidate: Run, comparison: Comparison,
                  thresholds: Thresholds, which: str, rounds: int | None) -> dict:
    """Paired re-measurement of the matched ok pairs (``which``: all or suspect), keyed by
    ``id(pair)``: the ``PairedResult`` of each pair measured."""
    from autotune.cli.common import workspace_for
    from autotune.paired import DEFAULT_ROUNDS, measure_paired

    if rounds is not None and rounds < 2:
        raise InputError(f"--rounds: at least 2 round pairs; got {rounds}")
    workspace = workspace_for(url)
    chosen = [pair for pair in comparison.matched
              if pair.baseline.ok and pair.candidate.ok
              and (which == "all" or _suspect(pair, thresholds.latency))]
    results = {}
    for index, pair in enumerate(chosen):
        print(f"paired {index + 1}/{len(chosen)}: {pair.candidate.config.label}/"
              f"{pair.candidate.backend}/{target_label(pair.candidate)}", file=sys.stderr)
        results[id(pair)] = measure_paired(
            _side(workspace, baseline, pair.baseline),
            _side(workspace, candidate, pair.candidate),
            rounds=rounds or DEFAULT_ROUNDS, threshold=thresholds.latency, alpha=thresholds.alpha)
    return results


def _side(workspace: Path, run: Run, trial):
    """What measuring ``trial`` of ``run`` again needs: its model, data, target, runtime."""
    from autotune.paired import PairedSide
    from autotune.target import load_target
    from autotune.worker import Job

    dataset = workspace / "runs" / run.id / "dataset.npz"
    for path in (Path(run.model_path), dataset):
        if not path.exists():
            raise InputError(f"{path}: run {run.id}'s file is gone; --paired needs the run's "
                             f"model and dataset")
    targets = [load_target(name) for name in run.settings.targets]
    target = next((t for t in targets if t.name == trial.target), None)
    if target is None:
        raise InputError(f"run {run.id}: target {trial.target!r} is not among its settings' "
                         f"targets {list(run.settings.targets)}")
    job = Job(model_path=run.model_path, config=trial.config.to_dict(), backend=trial.backend,
              target_path=str(target.path), dataset_path=str(dataset),
              cache_dir=str(workspace / "cache"), protocol={},
              tuning_trials=run.settings.tuning_trials)
    return PairedSide(job, python=runtime_python(run.settings.runtime, run.settings.backends))


def _regressions(comparison: Comparison, paired: dict) -> list:
    """Every regression; for a pair measured paired, its latency verdict is the paired one."""
    found = []
    for pair in comparison.matched:
        result = paired.get(id(pair))
        for finding in pair.findings:
            if finding.regression and not (result is not None and finding.kind == "slower"):
                found.append((pair, finding))
        if result is not None and (not result.ok or result.test.verdict == "slower"):
            found.append((pair, None))  # a paired measurement that failed is a finding too
    return found


def _paired_json(result) -> dict:
    return {"ok": result.ok, "error": result.error,
            "test": None if result.test is None else result.test.to_json(),
            "wall_s": result.wall_s}


def print_paired(comparison: Comparison, paired: dict, which: str) -> None:
    rows = []
    for pair in comparison.matched:
        result = paired.get(id(pair))
        if result is None:
            continue
        test = result.test
        today = next((f.kind for f in pair.findings
                      if f.kind in ("slower", "faster", CONTENDED)), "unchanged")
        rows.append([pair.candidate.config.label, pair.candidate.backend,
                     target_label(pair.candidate),
                     None if test is None else test.rounds,
                     None if test is None else f"{test.change:+.1%}",
                     None if test is None
                     else f"[{test.ci_low - 1:+.1%}, {test.ci_high - 1:+.1%}]",
                     None if test is None else f"{test.p_value:.2g}", today,
                     f"failed: {result.error}" if test is None
                     else ("REGRESSION: slower" if test.verdict == "slower"
                           else test.verdict or "unchanged")])
    print(f"\npaired re-measurement ({which}): baseline and candidate alternately, "
          "Wilcoxon signed-rank on the rounds' log ratios")
    if not rows:
        print("  no pair to measure")
        return
    print_table(["config", "backend", "target", "rounds", "change", "CI", "p", "samples rule",
                 "paired verdict"], rows)
    count = sum(1 for result in paired.values()
                if not result.ok or result.test.verdict == "slower")
    print(f"{count} paired regression(s) in {len(rows)} pairs measured")


def _why_unpaired(baseline: list[Trial], candidate: list[Trial]) -> str:
    """Why no trial of two runs pairs: other data (a zoo split that changed, another .npz)
    is named as such, since the model, configs and targets may all be the same."""
    data = [{trial.dataset_hash or "not recorded" for trial in trials}
            for trials in (baseline, candidate)]
    if data[0].isdisjoint(data[1]):
        return (f"they were scored on other data (calibration and evaluation: "
                f"{', '.join(sorted(data[0]))} vs {', '.join(sorted(data[1]))})")
    return "model, data, config, backend, target, tuning budget and emulation must match"


def _model(run: Run) -> str:
    return f"{run.model}@{run.model_hash[:8]}"


def as_json(baseline: Run, candidate: Run, comparison: Comparison,
            thresholds: Thresholds) -> dict:
    return {
        "baseline": _run_json(baseline),
        "candidate": _run_json(candidate),
        "version_changes": {name: {"baseline": old, "candidate": new}
                            for name, (old, new) in _changes(baseline, candidate).items()},
        "thresholds": vars(thresholds),
        "regressions": len(comparison.regressions),
        "unavailable": len(unavailable_pairs(comparison)),
        "trials": [_pair_json(pair) for pair in comparison.matched],
        "only_in_baseline": [_trial_json(t) for t in comparison.only_baseline],
        "only_in_candidate": [_trial_json(t) for t in comparison.only_candidate],
    }


def _run_json(run: Run) -> dict:
    return {"id": run.id, "created_at": run.created_at, "model": run.model,
            "model_hash": run.model_hash, "cpu_model": run.host.get("cpu_model"),
            "versions": run.versions}


def target_label(trial) -> str:
    """The target's name, marked when its latencies were measured under emulation."""
    return f"{trial.target} (emulated)" if trial.emulated else trial.target


def _trial_json(trial) -> dict:
    return {"config_id": trial.config.id, "config_text": trial.config.text,
            "backend": trial.backend, "target": trial.target, "emulated": trial.emulated,
            "status": trial.status}


def _pair_json(pair: TrialComparison) -> dict:
    latency = pair.latency
    return {
        **_trial_json(pair.candidate),
        "baseline_status": pair.baseline.status,
        "candidate_status": pair.candidate.status,
        "latency": None if latency is None else {
            "baseline_median_ms": latency.baseline_median_ms,
            "candidate_median_ms": latency.candidate_median_ms,
            "ratio": latency.ratio, "ci_low": latency.ci_low, "ci_high": latency.ci_high,
            "p_value": latency.p_value, "run_noise_sd": latency.run_noise,
            "noise_floor": latency.noise_floor, "significant": latency.significant,
            "baseline_samples": latency.baseline_count,
            "candidate_samples": latency.candidate_count},
        "memory_change": pair.memory_change,
        "accuracy_change_pp": pair.accuracy_change_pp,
        "regressed": pair.regressed,
        "contended": {"baseline": pair.baseline.contended,
                      "candidate": pair.candidate.contended},
        "findings": [{"kind": f.kind, "regression": f.regression, "detail": f.detail}
                     for f in pair.findings],
    }


def _changes(baseline: Run, candidate: Run) -> dict:
    # The autotune commit is listed too: a regression may be ours, not the runtime's.
    return version_changes(baseline.versions, candidate.versions)


def print_text(baseline: Run, candidate: Run, comparison: Comparison,
               thresholds: Thresholds) -> None:
    print(f"baseline  {baseline.id}  {_model(baseline)}  {baseline.host.get('cpu_model', '')}")
    print(f"candidate {candidate.id}  {_model(candidate)}  {candidate.host.get('cpu_model', '')}")
    changes = _changes(baseline, candidate)
    print("versions: " + (", ".join(f"{name} {old or '-'} -> {new or '-'}"
                                    for name, (old, new) in changes.items()) or "identical"))
    if baseline.host.get("cpu_model") != candidate.host.get("cpu_model"):
        print("note: the runs were measured on different CPUs")
    print()
    print_table(*_table(comparison, thresholds))
    for title, trials in (("only in baseline", comparison.only_baseline),
                          ("only in candidate", comparison.only_candidate)):
        if trials:
            print(f"\n{title}: " + ", ".join(f"{t.config.label}/{t.backend}/{target_label(t)} "
                                             f"({t.status})" for t in trials))
    tests = [pair.latency for pair in comparison.matched if pair.latency is not None]
    if any(test.noise_floor is None for test in tests):
        print("\nnote: a run measured in one pass does not know its run-to-run noise; those "
              "latency verdicts rest on one pass's samples (run with --passes 3)")
    contended = [pair for pair in comparison.matched
                 if any(f.kind == CONTENDED for f in pair.findings)]
    if contended:
        print(f"\nnote: {len(contended)} pair(s) measured under contention (other processes or "
              "the hypervisor took the trial's cores): no latency verdict on them; measure "
              "again on a quiet machine, or with --paired (both sides then share the machine's "
              "state, and the paired verdict stands)")
    unavailable = unavailable_pairs(comparison)
    if unavailable:
        print(f"\nnote: {len(unavailable)} pair(s) with a side whose backend could not run (not "
              "installed in that run's workers' environment, or its target unreachable): "
              "reported, not regressions")
        for pair, finding in unavailable:
            print(f"  {pair.candidate.config.label}/{pair.candidate.backend}/"
                  f"{target_label(pair.candidate)}: {finding.detail}")
    regressions = comparison.regressions
    print(f"\n{len(regressions)} regression(s) in {len(comparison.matched)} comparable trials "
          f"(latency threshold {thresholds.latency:.0%}, alpha {thresholds.alpha:g}, "
          f"accuracy {thresholds.accuracy_pp:g} pp)")
    for pair, finding in regressions:
        print(f"  {pair.candidate.config.label}/{pair.candidate.backend}/"
              f"{target_label(pair.candidate)}: {finding.kind}: {finding.detail}")


def _table(comparison: Comparison, thresholds: Thresholds) -> tuple[list[str], list[list]]:
    """Headers and rows of the comparison table, one row per compared trial."""
    return (["config", "backend", "target", "base ms", "cand ms", "change",
             f"{1 - thresholds.alpha:.0%} CI", "p", "noise", "memory", "accuracy pp", "status",
             "verdict"], [_row(pair) for pair in comparison.matched])


def _row(pair: TrialComparison) -> list:
    latency = pair.latency
    memory, accuracy = pair.memory_change, pair.accuracy_change_pp
    status = (pair.candidate.status if pair.baseline.status == pair.candidate.status
              else f"{pair.baseline.status} -> {pair.candidate.status}")
    verdict = ", ".join(f.kind for f in pair.findings) or "unchanged"
    if pair.regressed:
        verdict = "REGRESSION: " + verdict
    return [pair.candidate.config.label, pair.candidate.backend, target_label(pair.candidate),
            None if latency is None else f"{latency.baseline_median_ms:.4f}",
            None if latency is None else f"{latency.candidate_median_ms:.4f}",
            None if latency is None else f"{latency.change:+.1%}",
            None if latency is None else f"[{latency.ci_low - 1:+.1%}, {latency.ci_high - 1:+.1%}]",
            None if latency is None else f"{latency.p_value:.2g}",
            None if latency is None or latency.noise_floor is None
            else f"±{latency.noise_floor:.1%}",
            None if memory is None else f"{memory:+.1%}",
            None if accuracy is None else f"{accuracy:+.2f}",
            status, verdict]
