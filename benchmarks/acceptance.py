"""Acceptance decisions replayed against held-out outcomes: does the rule that accepts a candidate on validation pick
candidates that hold on test?

For each dataset (the bundled task and the reference sets compare.py knows, read from `../shared/data/`, skipped
where absent), validation size (24, 75, 125 cases: the case count is four times it, split 50/25/25) and seed, it
runs each strategy (demos and rules by default; opro with `--strategies`) for one step on the embedded model,
accepting anything so every proposal is kept, then scores every proposed candidate on the validation and test
splits. Each candidate is one decision: seed vs candidate on validation decides it, under the old rule (a gain of at
least 3 points, at most 2 good cases broken) and the new default (exact one-sided McNemar p < 0.05, at most 10 % of
the good validation cases broken); the test split says whether it was right:
- accepted-then-worse: accepted, and its test accuracy is below the seed's;
- rejected-then-better: rejected, and on test it is better with one-sided McNemar p < 0.05 (a gain the test split
  can show; a smaller one is indistinguishable from churn).

Prints the counts per rule and a table per dataset and size, writes every decision to
`--results`/acceptance_decisions.csv as it goes (with the counts so far in acceptance.json), and ends with one JSON
line `{"decisions", "old_accepted_worse", "old_rejected_better", "new_accepted_worse", "new_rejected_better"}`.

A run takes minutes per dataset, size, seed and strategy on 2 cores, so the decisions already in
acceptance_decisions.csv are kept and their configurations skipped: run it again with other `--datasets`,
`--sizes` or `--seeds` to add to the same table (`--fresh` starts over).

    python benchmarks/acceptance.py [--fresh] [--datasets tool-routing,clinc150,sgd,bfcl] [--sizes 24,75,125]
        [--seeds 0,1] [--strategies demos,rules] [--results benchmarks/results]
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from compare import DATASETS, prepare, strategy_options  # noqa: E402
from reference_tasks import DataMissing  # noqa: E402

OLD_RULE = {"max_broken": 2, "alpha": None, "min_gain": 0.03}
NEW_RULE = {"max_broken": None, "alpha": 0.05, "min_gain": 0.0, "max_broken_share": 0.1}
ACCEPT_ANYTHING = {"alpha": 1.0, "min_gain": 0.0, "max_broken_share": 1.0}
FIELDS = ["dataset", "size", "val_cases", "test_cases", "seed", "strategy", "candidate_id", "val_seed", "val_candidate",
          "val_fixed", "val_broken", "good", "good_broken", "test_seed", "test_candidate", "test_fixed",
          "test_broken", "test_p_better", "old_accepted", "new_accepted"]


def decisions_for(dataset: str, val_size: int, seed: int, strategy: str, backend: Any, db: str,
                  folder: Path) -> list[dict[str, Any]]:
    """One step of `strategy` accepting anything, then every proposed candidate scored on validation and test and
    judged by both rules."""
    from promptopt.api import optimize
    from promptopt.evaluators.tool_call import ToolCallEvaluator
    from promptopt.optimizer.acceptance import decide
    from promptopt.optimizer.budget import Budget
    from promptopt.optimizer.scorer import Scorer
    from promptopt.runs.store import Store
    from promptopt.statistics import mcnemar_one_sided
    from promptopt.tasks.tool_routing import ToolRoutingTask

    inputs = prepare(dataset, folder, 4 * val_size, seed)
    result = optimize(strategy=strategy, steps=1, seed=seed, db=db, model=backend, optimizer_model=backend,
                      **ACCEPT_ANYTHING, **inputs, **strategy_options(strategy, "small"))
    store = Store(db)
    run = store.run(result.run_id)
    splits = store.run_splits(result.run_id)
    cases = store.cases(list(splits))
    val = [c for c in cases if splits[c.id] == "val"]
    test = [c for c in cases if splits[c.id] == "test"]
    good = {c.id for c in val if c.label == "good"}
    arguments = bool(run.config.get("check_arguments"))  # as the run scored: the same task and evaluator settings
    scorer = Scorer(ToolRoutingTask(tools=run.tools, check_arguments=arguments), backend,
                    ToolCallEvaluator(check_arguments=arguments, tools=run.tools), store, result.run_id, Budget())

    def outcomes(candidate_id: int, prompt: str, cases: list[Any]) -> dict[int, Any]:
        """The candidate's results on `cases`: those the run stored, the rest scored now (and stored)."""
        stored = store.evaluations(candidate_id)
        missing = [c for c in cases if c.id not in stored]
        scored = scorer.score(candidate_id, prompt, missing, charge=False) if missing else {}
        return {c.id: stored[c.id] if c.id in stored else scored[c.id] for c in cases}

    seed_val = outcomes(run.seed_candidate_id, result.seed_prompt, val)
    seed_test = outcomes(run.seed_candidate_id, result.seed_prompt, test)
    rows = []
    for candidate in store.candidates(result.run_id):
        if candidate.operator == "seed" or candidate.status == "invalid":
            continue
        cand_val = outcomes(candidate.id, candidate.prompt, val)
        cand_test = outcomes(candidate.id, candidate.prompt, test)
        old = decide(seed_val, cand_val, good, **OLD_RULE)
        new = decide(seed_val, cand_val, good, **NEW_RULE)
        test_fixed = sum(cand_test[i].passed and not seed_test[i].passed for i in cand_test)
        test_broken = sum(seed_test[i].passed and not cand_test[i].passed for i in cand_test)
        rows.append({
            "dataset": dataset, "size": val_size, "val_cases": len(val), "test_cases": len(test), "seed": seed, "strategy": strategy,
            "candidate_id": candidate.id, "val_seed": old.incumbent_accuracy, "val_candidate": old.candidate_accuracy,
            "val_fixed": len(old.fixed), "val_broken": len(old.broken), "good": len(good),
            "good_broken": len(old.guarded_broken), "test_seed": accuracy_of(seed_test),
            "test_candidate": accuracy_of(cand_test), "test_fixed": test_fixed, "test_broken": test_broken,
            "test_p_better": mcnemar_one_sided(test_fixed, test_broken),
            "old_accepted": old.accepted, "new_accepted": new.accepted,
        })
    return rows


def accuracy_of(results: dict[int, Any]) -> float:
    return sum(r.passed for r in results.values()) / len(results) if results else 0.0


def outcome(row: dict[str, Any], rule: str) -> str:
    """`accepted_worse`, `rejected_better` or `right` for one decision under `rule` (old / new)."""
    if row[f"{rule}_accepted"] and row["test_candidate"] < row["test_seed"]:
        return "accepted_worse"
    if not row[f"{rule}_accepted"] and row["test_candidate"] > row["test_seed"] and row["test_p_better"] < 0.05:
        return "rejected_better"
    return "right"


def summary(rows: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"decisions": len(rows)}
    for rule in ("old", "new"):
        for kind in ("accepted_worse", "rejected_better"):
            counts[f"{rule}_{kind}"] = sum(outcome(r, rule) == kind for r in rows)
    return counts


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Per dataset and validation size: decisions, accepted and wrong under each rule."""
    lines = ["| dataset | validation cases | decisions | old: accepted | old: accepted, worse on test | old: rejected, "
             "better on test | new: accepted | new: accepted, worse on test | new: rejected, better on test |",
             "|" + "---|" * 9]
    groups: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["size"]), []).append(row)
    for (dataset, size), group in sorted(groups.items()):
        cells = [dataset, str(size), str(len(group))]
        for rule in ("old", "new"):
            cells += [str(sum(r[f"{rule}_accepted"] for r in group)),
                      str(sum(outcome(r, rule) == "accepted_worse" for r in group)),
                      str(sum(outcome(r, rule) == "rejected_better" for r in group))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--sizes", default="24,75,125", help="validation cases (the case count is four times it)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--strategies", default="demos,rules")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--results", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--fresh", action="store_true", help="drop the decisions already in --results")
    args = parser.parse_args()
    from promptopt.models import load_model

    backend = load_model(args.model)
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    decisions = results / "acceptance_decisions.csv"
    rows = [] if args.fresh or not decisions.exists() else read_rows(decisions)
    done = {(r["dataset"], r["seed"], r["strategy"], configured_size(r)) for r in rows}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        db = f"sqlite:///{Path(scratch) / 'acceptance.db'}"
        for dataset in args.datasets.split(","):
            for size in [int(s) for s in args.sizes.split(",")]:
                for seed in [int(s) for s in args.seeds.split(",")]:
                    for strategy in args.strategies.split(","):
                        if (dataset, seed, strategy, size) in done:
                            continue
                        began = time.perf_counter()
                        try:
                            found = decisions_for(dataset, size, seed, strategy, backend, db, Path(scratch))
                        except DataMissing as missing:
                            print(f"{dataset}: skipped ({missing})", file=sys.stderr)
                            break
                        rows += found
                        print(f"{dataset} val {size} seed {seed} {strategy}: {len(found)} decisions "
                              f"({time.perf_counter() - began:.0f} s)", file=sys.stderr, flush=True)
                        write_rows(decisions, rows)
                        (results / "acceptance.json").write_text(json.dumps(summary(rows)) + "\n", encoding="utf-8")
    print("\n".join(table(rows)))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    print(json.dumps(summary(rows)))


def configured_size(row: dict[str, Any]) -> int:
    """The `--sizes` value a decision was measured at (a dataset short of cases can give a smaller split)."""
    return int(row.get("size") or row["val_cases"])


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Decisions written by an earlier run, typed as `decisions_for` makes them."""
    rows = []
    with path.open(newline="", encoding="utf-8") as handle:
        for raw in csv.DictReader(handle):
            row: dict[str, Any] = dict(raw)
            for name in ("val_cases", "test_cases", "seed", "candidate_id", "val_fixed", "val_broken", "good",
                         "good_broken", "test_fixed", "test_broken", "size"):
                row[name] = int(row[name])
            for name in ("val_seed", "val_candidate", "test_seed", "test_candidate", "test_p_better"):
                row[name] = float(row[name])
            for name in ("old_accepted", "new_accepted"):
                row[name] = row[name] == "True"
            rows.append(row)
    return rows


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
