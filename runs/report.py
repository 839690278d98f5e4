"""A run's result, computed from the store: seed vs. winner on the test split with intervals and a paired test."""
from __future__ import annotations

import hashlib
from typing import Any

from promptopt.runs.store import Store
from promptopt.runs.tables import RunRow, StepRow
from promptopt.runs.writer_lock import run_status
from promptopt.statistics import mcnemar_exact, smallest_significant_gain, wilson_interval


class RunNotFound(KeyError):
    """No run with that id in the store."""


class AmbiguousRunId(ValueError):
    """A run id prefix that more than one stored run starts with."""


def full_run_id(store: Store, given: str) -> str:
    """The id of the stored run whose id is `given`, or the only one that starts with it (as git takes a commit's
    prefix); `RunNotFound` or `AmbiguousRunId` otherwise."""
    matches = store.run_ids_starting(given) if given else []
    if given in matches or len(matches) == 1:
        return given if given in matches else matches[0]
    if not matches:
        raise RunNotFound(given)
    raise AmbiguousRunId(f"run id {given!r} is the start of {'10 or more' if len(matches) == 10 else len(matches)} "
                         f"runs ({', '.join(matches[:5])}{' ...' if len(matches) > 5 else ''}): give more of it")


def run_report(store: Store, run_id: str, status: str | None = None) -> dict[str, Any]:
    """Seed and winner test accuracy with 95 % Wilson intervals, exact McNemar p, fixed/broken cases, costs.
    `status` reports the run as having it (the loop reports its run as finished in the write that marks it so)."""
    run = store.run(run_id)
    if run is None:
        raise RunNotFound(run_id)
    splits = store.run_splits(run_id)
    test_ids = [cid for cid, split in splits.items() if split == "test"]
    steps = store.steps(run_id)
    candidates = store.candidates(run_id)
    report: dict[str, Any] = {
        "run_id": run_id, "task": run.task, "strategy": run.strategy, "status": status or run_status(store, run),
        "test_cases": len(test_ids), "split": split_summary(store, run, splits),
        "candidates": sum(1 for c in candidates if c.operator != "seed"),
        "invalid_candidates": sum(1 for c in candidates if c.status == "invalid"),
        "accepted": sum(1 for c in candidates if c.status == "accepted" and c.operator != "seed"),
        **store.call_totals(run_id),
    }
    seed_eval = store.evaluations(run.seed_candidate_id) if run.seed_candidate_id else {}
    winner_eval = store.evaluations(run.winner_candidate_id) if run.winner_candidate_id else {}
    scored = [i for i in test_ids if i in seed_eval and i in winner_eval]
    val_by_candidate = {s.incumbent_id: s.val_accuracy for s in steps if s.val_accuracy >= 0}
    for key, candidate_id, evaluations in (("seed", run.seed_candidate_id, seed_eval),
                                           ("winner", run.winner_candidate_id, winner_eval)):
        passed = sum(evaluations[i].passed for i in scored)
        lo, hi = wilson_interval(passed, len(scored))
        report[key] = {
            "candidate_id": candidate_id,
            "test_accuracy": passed / len(scored) if scored else None,
            "ci95": [lo, hi],
            "val_accuracy": val_by_candidate.get(candidate_id),
        }
    breakdown = evaluator_breakdown({"seed": [seed_eval[i] for i in scored], "winner": [winner_eval[i] for i in scored]})
    if breakdown:
        report["evaluators"] = breakdown
    fixed = [i for i in scored if winner_eval[i].passed and not seed_eval[i].passed]
    broken = [i for i in scored if seed_eval[i].passed and not winner_eval[i].passed]
    report.update(p_value=mcnemar_exact(len(fixed), len(broken)), fixed=len(fixed), broken=len(broken),
                  fixed_case_ids=fixed, broken_case_ids=broken,
                  smallest_significant_gain=smallest_significant_gain(len(scored)),
                  steps=[{"step": s.step, "incumbent_id": s.incumbent_id, "val_accuracy": s.val_accuracy,
                          "message": s.message} for s in steps])
    if report["status"] != "finished":
        report.update(unfinished_progress(run, steps, report["status"]))
    return report


PROVENANCE_SETTINGS = ("model", "base_url", "optimizer_model", "optimizer_base_url", "judge_model", "options", "seed",
                       "budget_calls", "budget_tokens", "budget_usd", "budget_seconds", "evaluator")


def run_provenance(run: RunRow) -> dict[str, Any]:
    """Where a run's result came from: its models and endpoints, strategy and options, seed and budget, when it
    started and ended, and the promptopt version that made it (for `runs show --json` and `export --format json`)."""
    config = run.config or {}
    return {"strategy": run.strategy, **{name: config.get(name) for name in PROVENANCE_SETTINGS},
            "started_at": run.created_at.isoformat() if run.created_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "promptopt_version": run.promptopt_version or None}


def split_summary(store: Store, run: RunRow, splits: dict[int, str]) -> dict[str, Any]:
    """Which split the run used: its seed, the size of each part, and a fingerprint of which cases went where (by
    content, so runs on the same cases and seed show the same fingerprint in any store)."""
    lines = sorted(f"{splits[case_id]} {digest}" for case_id, digest in store.case_hashes(splits).items())
    return {"seed": (run.config or {}).get("seed"),
            **{name: sum(1 for split in splits.values() if split == name) for name in ("train", "val", "test")},
            "fingerprint": hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:12]}


def unfinished_progress(run: RunRow, steps: list[StepRow], status: str) -> dict[str, Any]:
    """What a run that did not finish has: steps done of those planned, its incumbent (the last step's, else the
    seed) with its validation score, and the error it stopped with (`status`: the one shown, see `run_status`)."""
    last = steps[-1] if steps else None
    incumbent_id = last.incumbent_id if last else run.seed_candidate_id
    val = last.val_accuracy if last and last.val_accuracy >= 0 else None
    error = run.error or ""
    if run.status == "running" and status == "interrupted":
        error = "its process is gone (killed or crashed): it no longer holds the run's writer lock or writes its heartbeat"
    return {"steps_done": len({s.step for s in steps if s.step > 0}), "steps_planned": (run.config or {}).get("steps"),
            "incumbent": {"candidate_id": incumbent_id, "val_accuracy": val}, "error": error}


def evaluator_breakdown(evaluations: dict[str, list[Any]]) -> dict[str, dict[str, dict[str, float]]] | None:
    """Per component evaluator and prompt: mean score and pass rate on the given evaluations; None when the
    evaluations name fewer than two evaluators (nothing to break down)."""
    names = list(dict.fromkeys(name for rows in evaluations.values() for row in rows for name in (row.scores or {})))
    if len(names) < 2:
        return None
    breakdown: dict[str, dict[str, dict[str, float]]] = {}
    for name in names:
        breakdown[name] = {}
        for key, rows in evaluations.items():
            values = [row.scores[name] for row in rows if name in (row.scores or {})]
            breakdown[name][key] = {"mean_score": sum(values) / len(values) if values else None,
                                    "pass_rate": sum(v >= 1.0 for v in values) / len(values) if values else None}
    return breakdown


def format_report(report: dict[str, Any]) -> str:
    """The human-readable result table printed at the end of a run and by `promptopt runs show`; for a run that
    did not finish, what it has so far (`format_progress`)."""
    if report["status"] != "finished":
        return format_progress(report)

    def pct(value: float | None) -> str:
        return "   n/a" if value is None else f"{100 * value:5.1f}%"

    lines = [f"run {report['run_id']}  task {report['task']}  strategy {report['strategy']}  ({report['status']})",
             "",
             f"{'':14}{'test accuracy':>15}{'95% CI':>18}{'validation':>13}"]
    for key, title in (("seed", "seed prompt"), ("winner", "winner")):
        row = report[key]
        lo, hi = row["ci95"]
        lines.append(f"{title:14}{pct(row['test_accuracy']):>15}{f'[{100 * lo:.1f}, {100 * hi:.1f}]':>18}"
                     f"{pct(row['val_accuracy']):>13}")
    lines += ["",
              f"paired exact McNemar p = {report['p_value']:.4g} on {report['test_cases']} held-out test cases: "
              f"{report['fixed']} fixed, {report['broken']} broken",
              *split_line(report),
              f"candidates {report['candidates']} ({report['invalid_candidates']} invalid), accepted "
              f"{report['accepted']}; model calls {report['model_calls']} ({report['new_model_calls']} new, "
              f"{report['cache_hits']} from cache), tokens in {report['tokens_in']}, out {report['tokens_out']}, "
              f"spent ${report['cost_usd']:.4f}"]
    if report.get("evaluators"):
        lines += ["", f"{'per evaluator (test)':22}{'seed mean':>11}{'passed':>9}{'winner mean':>13}{'passed':>9}"]
        for name, by_prompt in report["evaluators"].items():
            seed, winner = by_prompt["seed"], by_prompt["winner"]
            lines.append(f"{name[:22]:22}{mean_text(seed['mean_score']):>11}{pct(seed['pass_rate']):>9}"
                         f"{mean_text(winner['mean_score']):>13}{pct(winner['pass_rate']):>9}")
    if report["failed_calls"]:
        lines.append(f"warning: {report['failed_calls']} model call(s) failed after their last retry; those "
                     "evaluations count as wrong (see `promptopt runs show --json`)")
    if report["candidates"] and report["invalid_candidates"] == report["candidates"]:
        lines.append("every candidate was invalid (protected region edited, a tool dropped, or too long), so none "
                     f"was evaluated: see `promptopt runs show {report['run_id']} --steps`")
    if report["winner"]["candidate_id"] == report["seed"]["candidate_id"]:
        lines.append("no candidate passed acceptance; the seed prompt stays the winner")
    else:
        lines += test_size_warning(report)
    return "\n".join(lines)


def split_line(report: dict[str, Any]) -> list[str]:
    """The split, as the summary shows it (none for reports stored before they named it)."""
    split = report.get("split") or {}
    if not split:
        return []
    return [f"split: seed {split['seed']}, train {split['train']} / validation {split['val']} / test {split['test']}"
            f" cases, fingerprint {split['fingerprint']} (the same cases and seed give the same split in any store)"]


def test_size_warning(report: dict[str, Any]) -> list[str]:
    """What the test split can and cannot show at its size, when the gain validation claimed is smaller than the
    smallest gain a paired test on the test cases could call significant (p < 0.05, nothing broken)."""
    smallest = report.get("smallest_significant_gain")
    seed_val, winner_val = report["seed"]["val_accuracy"], report["winner"]["val_accuracy"]
    if seed_val is None or winner_val is None:
        return []
    claimed = winner_val - seed_val
    if smallest is not None and claimed >= smallest:
        return []
    can = f"a gain of at least {100 * smallest:.1f} points" if smallest is not None else "no gain at all"
    return [f"warning: validation claimed +{100 * claimed:.1f} points, but on {report['test_cases']} test cases a "
            f"paired test can call only {can} significant (p < 0.05, nothing broken): this test split cannot "
            "confirm the gain"]


def format_progress(report: dict[str, Any]) -> str:
    """A run that did not finish: what it has so far and how to resume it, never a seed-vs-winner verdict."""
    incumbent = report["incumbent"]
    val = incumbent["val_accuracy"]
    planned = f" of {report['steps_planned']}" if report.get("steps_planned") else ""
    lines = [f"run {report['run_id']}  task {report['task']}  strategy {report['strategy']}  ({report['status']})",
             "",
             f"not finished: {report['steps_done']}{planned} step(s) done; incumbent candidate "
             f"{incumbent['candidate_id']}, validation {'n/a' if val is None else f'{100 * val:.1f}%'}",
             f"candidates {report['candidates']} ({report['invalid_candidates']} invalid), accepted "
             f"{report['accepted']}; model calls {report['model_calls']}, tokens in {report['tokens_in']}, "
             f"out {report['tokens_out']}"]
    if report.get("error"):
        lines.append(f"stopped by: {report['error']}")
    if report["status"] != "running":
        lines.append(f"resume with: promptopt run --resume {report['run_id']}")
    return "\n".join(lines)


def mean_text(value: float | None) -> str:
    """A mean score with three decimals, or `n/a`."""
    return "n/a" if value is None else f"{value:.3f}"
