"""``autotune run -f FILE``: every cell of a run file as one run, under one campaign id.

A cell that fails (bad input, an internal error) is reported and the next one runs: one
broken model must not cost the night's other measurements. The exit code is the worst of
the cells' (an interruption stops the campaign). ``--baseline``/``--fail-on`` judge each
cell against the same cell of an earlier night (``autotune.gate``), and ``--junit`` gets
one test suite per cell.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from autotune.cli.common import markdown_table, print_json
from autotune.cli.exits import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, write_crash_log
from autotune.cli.junit import Case, Suite, write_suites
from autotune.cli.one_run import RunResult, check_gate, load_names, run_one
from autotune.errors import InputError
from autotune.runfile import Cell, RunFile, apply_flags, cells, load_run_file
from autotune.store import RUN_ALIASES, Store, new_campaign_id


def run_campaign(args, store: Store, flags: dict, thresholds, say) -> int:
    """Run every cell of ``args.file`` with the ``flags`` given (``RunSpec`` field -> value)
    in force; returns the exit code."""
    run_file = apply_flags(load_run_file(args.file), flags)
    args = gate_args(args, run_file, store)
    planned = cells(run_file)
    for cell in planned:  # a typo in a name fails now, not hours into the night
        load_names(cell.spec)
    campaign = new_campaign_id(args.file.stem)
    print(f"campaign {campaign}: {len(planned)} run(s) from {args.file}", file=say, flush=True)
    results: list[tuple[Cell, RunResult]] = []
    for cell in planned:
        print(f"\ncell {cell.index}/{len(planned)}: {cell.label}", file=say, flush=True)
        result = _run_cell(args, store, cell, thresholds, say, campaign)
        results.append((cell, result))
        if result.code == EXIT_INTERRUPTED:
            print(f"campaign {campaign} interrupted at cell {cell.index}/{len(planned)}; "
                  f"cells not run: {len(planned) - cell.index}", file=sys.stderr)
            break
    codes = [result.code for _, result in results]
    code = EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else max(codes)
    summary_path = write_summary(args.report_dir, campaign, len(planned), results)
    print(f"\ncampaign {campaign}: " + ", ".join(
        f"cell {cell.index} {_verdict(result)}" for cell, result in results)
        + f"; exit {code}; summary: {summary_path}", file=say)
    if args.junit is not None:
        write_suites(args.junit, [_suite(cell, result, len(planned)) for cell, result in results])
    if args.json:
        print_json({"campaign": campaign, "file": str(args.file), "summary": str(summary_path),
                    "cells": [{"cell": cell.index, "label": cell.label,
                               "settings": cell.spec.to_json(), **result.summary,
                               "exit_code": result.code} for cell, result in results],
                    "planned": len(planned), "exit_code": code})
    return code


def gate_args(args: argparse.Namespace, run_file: RunFile, store: Store) -> argparse.Namespace:
    """``args`` with the run file's ``baseline`` and ``fail_on`` where no flag gave them
    (a flag wins), checked as the flags are."""
    merged = argparse.Namespace(**vars(args))
    merged.baseline = args.baseline or run_file.baseline
    merged.fail_on = args.fail_on or list(run_file.fail_on) or None
    check_gate(merged.baseline, merged.fail_on, merged.junit)
    if merged.baseline not in (None, *RUN_ALIASES):
        store.get_run(merged.baseline)  # a typo fails now, not after the night's runs
    return merged


def _run_cell(args, store: Store, cell: Cell, thresholds, say, campaign: str) -> RunResult:
    """One cell's run; its bad input or internal error is its outcome, not the campaign's."""
    try:
        return run_one(args, store, cell.spec, thresholds, say, campaign=campaign)
    except InputError as error:
        message = f"bad input: {error}"
        code = EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return RunResult(EXIT_INTERRUPTED, {"run_id": None, "error": "interrupted"})
    except Exception as error:  # noqa: BLE001 - a bug in one cell: logged, the others run
        log = write_crash_log(args, None)
        message = f"internal error: {type(error).__name__}: {error} (traceback in {log})"
        code = EXIT_INTERNAL
    print(f"cell {cell.index}: {message}", file=sys.stderr)
    return RunResult(code, {"run_id": None, "error": message})


def _verdict(result: RunResult) -> str:
    if result.summary.get("error"):
        return f"failed (exit {result.code})"
    gate = result.summary.get("gate") or {}
    regressions = gate.get("regressions", 0)
    changes = (result.summary.get("changes") or {}).get("new_regressions", 0)
    found = ", ".join([f"{regressions} regression(s)"] * bool(regressions)
                      + [f"{changes} new change point(s), worse"] * bool(changes))
    what = found or ("ok" if result.code == 0 else
                     "no successful trial" if result.code == 1 else "interrupted")
    return f"run {result.summary['run_id']} {what}"


def _suite(cell: Cell, result: RunResult, total: int) -> Suite:
    name = f"cell {cell.index}/{total}: {cell.label}"
    if result.suite is not None:
        return Suite(f"{name}: {result.suite.name}", result.suite.cases)
    error = result.summary.get("error")
    case = Case("run", "autotune.campaign", error=error) if error else Case(
        "run", "autotune.campaign",
        skipped="no comparison (no successful trial, or interrupted)")
    return Suite(name, [case])


def write_summary(report_dir: Path, campaign: str, planned: int,
                  results: list[tuple[Cell, RunResult]]) -> Path:
    """``REPORT_DIR/campaigns/ID.md`` (and ``latest.md``): one row per cell with its run,
    outcome and report, for a CI job summary or the folder a nightly job publishes."""
    rows = []
    for cell, result in results:
        summary = result.summary
        trials = summary.get("trials") or {}
        gate = summary.get("gate") or {}
        rows.append([cell.index, cell.label, summary.get("run_id"),
                     f"{trials.get('ok', 0)}/{trials.get('total', 0)}" if trials else None,
                     gate.get("baseline"), gate.get("regressions") if gate else None,
                     result.code, summary.get("error") or (summary.get("report") or {}).get(
                         "summary")])
    text = (f"### autotune campaign {campaign}: {len(results)} of {planned} run(s)\n\n"
            + markdown_table(["cell", "what", "run", "ok/trials", "baseline", "regressions",
                              "exit", "report or error"], rows) + "\n")
    path = Path(report_dir) / "campaigns" / f"{campaign}.md"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        (path.parent / "latest.md").write_text(text)  # a fixed path for a nightly script
    except OSError as error:
        raise InputError(f"--report-dir {report_dir}: cannot write ({error.strerror})") from None
    return path
