"""promptopt's strategies side by side with DSPy's optimizers, on the same task, cases, models, budget and seed.

For each dataset (the bundled grocery task and tool-routing tasks built from BFCL v4, CLINC150 and SGD in
`../shared/data/`, skipped with a message where absent) and each strategy (demos, opro, apo, bpo and the DSPy
bridge's dspy-copro, dspy-mipro, dspy-bootstrap, dspy-gepa, where installed), one `promptopt` run under the same
model-call budget: seed and winner accuracy on the held-out test split with 95 % intervals, paired p, model
calls, tokens and wall time, all read from the run's report, and what became of its candidates (proposed, valid,
scored, accepted) from the store. Prints a table, writes it as Markdown and CSV under
`--results`, and ends with one JSON line.

`--append` adds rows to an earlier comparison in the same results folder (a strategy installed later, say).
`--scale small` (default) shrinks each strategy's per-step work (samples, reply length, beam) to what the embedded
model can do (on 2 cores a run with the default Qwen2.5-Coder-0.5B and 400 cases takes 1.5 to 6.5 minutes, so
the whole default comparison takes hours: pick `--datasets` and `--strategies`, with `--append`);
`--scale paper` keeps each strategy's own defaults, for a capable endpoint (`--model`, `--optimizer-model`,
`--base-url`, `--optimizer-base-url`).
Runs share one response cache under the results folder, so identical calls (every strategy scores the same
seed prompt) are answered once; model calls are counted whether cached or not, so the figures stay
comparable, but later rows' wall times benefit.

    python benchmarks/compare.py [--datasets tool-routing,clinc150,sgd] [--append] [--strategies ...]
        [--budget-calls 1000] [--cases 400] [--seed 0] [--scale small|paper] [--results benchmarks/results]
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from reference_tasks import LOADERS, DataMissing, ReferenceTask, balanced_sample  # noqa: E402

DATASETS = ["tool-routing", *LOADERS]
PROMPTOPT_STRATEGIES = ["demos", "opro", "apo", "bpo"]
DSPY_STRATEGIES = ["dspy-copro", "dspy-mipro", "dspy-bootstrap", "dspy-gepa"]

# Per-step work for --scale small: what fits the embedded model (~18 generated tokens/s on 2 cores).
SMALL_OPTIONS: dict[str, dict[str, Any]] = {
    "opro": {"candidates": 4, "reply_tokens": 160, "train_sample": 32},
    "apo": {"beam_width": 2, "minibatch": 32, "gradients": 2, "paraphrases": 1, "max_successors": 4,
            "eval_budget": 12, "pull_size": 16, "reply_tokens": 160},
    "bpo": {"reply_tokens": 160},
    "dspy-copro": {"reply_tokens": 160, "depth": 1},
    "dspy-mipro": {"reply_tokens": 160},
    "dspy-gepa": {"reply_tokens": 160},
}
SMALL_STEPS = {"apo": 2, "opro": 2}

COLUMNS = ["dataset", "strategy", "seed_acc", "seed_ci", "winner_acc", "winner_ci", "p_value", "accepted",
           "proposed", "valid", "scored", "model_calls", "tokens", "wall_s", "run_id", "note"]


def prepare(dataset: str, folder: Path, cases: int, seed: int) -> dict[str, Any]:
    """The `optimize` arguments for `dataset`: its files (written under `folder` for reference tasks)."""
    task = bundled_sample(cases, seed) if dataset == "tool-routing" else LOADERS[dataset](limit=cases, seed=seed)
    case_file, tools_file, prompt_file = task.write(folder / task.name)
    return {"cases": [case_file], "tools": tools_file, "prompt": prompt_file}


def bundled_sample(cases: int, seed: int) -> ReferenceTask:
    """The bundled grocery task with `cases` of its bad and good cases, balanced over expected tools."""
    from promptopt.tasks import bundled_task

    bundled = bundled_task("tool-routing")
    records = [json.loads(line) for path in bundled.case_files
               for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return ReferenceTask("tool-routing", bundled.tools, bundled.seed_prompt,
                         balanced_sample(records, cases, random.Random(seed)))


def strategy_options(name: str, scale: str) -> dict[str, Any]:
    """The options this comparison gives `name`, limited to those the strategy takes."""
    from promptopt.optimizer import strategy_class

    if scale != "small":
        return {}
    wanted = SMALL_OPTIONS.get(name, {})
    takes = {option.name for option in strategy_class(name).options}
    return {k: v for k, v in wanted.items() if k in takes}


def run_one(dataset: str, strategy: str, inputs: dict[str, Any], args: argparse.Namespace, db: str,
            backends: dict[str, Any]) -> dict[str, Any]:
    """One run; its row of the table (from the run's report), or a row that says why it did not finish."""
    from promptopt.api import optimize

    steps = SMALL_STEPS.get(strategy) if args.scale == "small" else None
    started = time.perf_counter()
    try:
        result = optimize(strategy=strategy, steps=steps, seed=args.seed, db=db, budget_calls=args.budget_calls,
                          model=backends["task"], optimizer_model=backends["optimizer"],
                          progress=lambda message: print(f"    {message}", file=sys.stderr) if args.verbose else None,
                          **inputs, **strategy_options(strategy, args.scale))
    except Exception as error:  # a strategy that fails is a row of the table, not the end of the comparison
        return {"dataset": dataset, "strategy": strategy, "note": f"failed: {type(error).__name__}: {error}"[:200],
                "wall_s": round(time.perf_counter() - started, 1)}
    report = result.report
    return {
        "dataset": dataset, "strategy": strategy, "proposed": report["candidates"],
        "valid": report["candidates"] - report["invalid_candidates"], "scored": scored_candidates(db, result.run_id),
        "seed_acc": report["seed"]["test_accuracy"], "seed_ci": report["seed"]["ci95"],
        "winner_acc": report["winner"]["test_accuracy"], "winner_ci": report["winner"]["ci95"],
        "p_value": report["p_value"], "accepted": report["accepted"], "model_calls": report["model_calls"],
        "tokens": report["tokens_in"] + report["tokens_out"], "wall_s": round(time.perf_counter() - started, 1),
        "run_id": result.run_id, "test_cases": report["test_cases"], "note": "",
    }


def scored_candidates(db: str, run_id: str) -> int:
    """How many of the run's candidates (the seed left out; DSPy's trials counted) were evaluated on any case (the
    report counts those proposed, invalid and accepted, not this)."""
    from promptopt.runs.store import Store

    store = Store(db)
    return sum(bool(store.evaluations(c.id)) for c in store.candidates(run_id) if c.operator != "seed")


def _counts(row: dict[str, Any]) -> str:
    keys = ("proposed", "valid", "scored", "accepted")
    return "" if row.get("proposed") is None else " / ".join(str(row.get(k, "")) for k in keys)


def _pct(value: Any) -> str:
    return "" if value is None else f"{100 * value:.1f}"


def _ci(value: Any) -> str:
    return "" if not value else f"[{100 * value[0]:.1f}, {100 * value[1]:.1f}]"


def table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The comparison as a Markdown table."""
    lines = ["| dataset | strategy | seed test % | 95% CI | winner test % | 95% CI | p | accepted | candidates "
             "proposed / valid / scored / accepted | model calls | tokens | wall s | note |", "|" + "---|" * 13]
    for r in rows:
        p = r.get("p_value")
        lines.append(f"| {r['dataset']} | {r['strategy']} | {_pct(r.get('seed_acc'))} | {_ci(r.get('seed_ci'))} | "
                     f"{_pct(r.get('winner_acc'))} | {_ci(r.get('winner_ci'))} | "
                     f"{'' if p is None else f'{p:.3g}'} | {r.get('accepted', '')} | {_counts(r)} | "
                     f"{r.get('model_calls', '')} | "
                     f"{r.get('tokens', '')} | {r.get('wall_s', '')} | {r.get('note', '')} |")
    return lines


def verdicts(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per dataset: promptopt's best and DSPy's best (winner test accuracy, then fewer calls), and whether
    promptopt's best reaches DSPy's best accuracy with at most half its model calls."""
    out: dict[str, Any] = {}
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        done = [r for r in rows if r["dataset"] == dataset and r.get("winner_acc") is not None]

        def best(names: list[str]) -> dict[str, Any] | None:
            pool = [r for r in done if r["strategy"] in names]
            return max(pool, key=lambda r: (r["winner_acc"], -r["model_calls"])) if pool else None

        ours, theirs = best(PROMPTOPT_STRATEGIES), best(DSPY_STRATEGIES)
        entry: dict[str, Any] = {}
        for key, row in (("promptopt", ours), ("dspy", theirs)):
            if row:
                entry[key] = {"strategy": row["strategy"], "test_accuracy": row["winner_acc"],
                              "model_calls": row["model_calls"]}
        if ours and theirs:
            entry["target_met"] = bool(ours["winner_acc"] >= theirs["winner_acc"]
                                       and ours["model_calls"] <= theirs["model_calls"] / 2)
        out[dataset] = entry
    return out


def write_results(args: argparse.Namespace, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Write the table so far (Markdown, CSV, JSON) under `--results`; a later row replaces an earlier one for
    the same dataset and strategy. Written after every run, so an interrupted comparison keeps its rows."""
    latest = {(r["dataset"], r["strategy"]): r for r in rows}
    rows = list(latest.values())
    (args.results / "compare.json").write_text(json.dumps(rows, indent=1), encoding="utf-8")
    command = "python benchmarks/compare.py " + " ".join(sys.argv[1:])
    (args.results / "compare.md").write_text(
        f"Command: `{command.strip()}`; models: task {args.model}, optimizer {args.optimizer_model or args.model}; "
        f"budget {args.budget_calls} model calls per run; seed {args.seed}; scale {args.scale}; "
        f"{time.strftime('%Y-%m-%d')}.\n\n" + "\n".join(table_lines(rows)) + "\n", encoding="utf-8")
    with open(args.results / "compare.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="tool-routing,clinc150,sgd", help=f"Any of {', '.join(DATASETS)}.")
    parser.add_argument("--strategies", default=",".join(PROMPTOPT_STRATEGIES + DSPY_STRATEGIES))
    parser.add_argument("--budget-calls", type=int, default=1000, help="Model calls per run, task and optimizer.")
    parser.add_argument("--cases", type=int, default=400,
                        help="Cases per dataset (a balanced sample; 400 gives 100 held-out test cases).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", choices=["small", "paper"], default="small")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--base-url", default=None)
    parser.add_argument("--optimizer-model", default=None, help="Default: the task model.")
    parser.add_argument("--optimizer-base-url", default=None)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--results", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument("--append", action="store_true",
                        help="Keep the rows of an earlier comparison in --results that this one does not redo.")
    parser.add_argument("--verbose", action="store_true", help="Show each run's progress.")
    args = parser.parse_args()

    args.results.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PROMPTOPT_CACHE_DIR", str(args.results / "response-cache"))
    os.environ.setdefault("DSPY_CACHEDIR", str(args.results / "dspy-cache"))
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    from promptopt.models import load_model, resolve_model_settings
    from promptopt.optimizer import strategy_names

    task_settings = resolve_model_settings("task_model", args.model, args.base_url)
    optimizer_settings = resolve_model_settings("optimizer_model", args.optimizer_model or args.model,
                                                args.optimizer_base_url or args.base_url)
    task_backend = load_model(task_settings, args.concurrency)
    backends = {"task": task_backend, "optimizer": task_backend if optimizer_settings == task_settings
                else load_model(optimizer_settings, args.concurrency)}
    db = f"sqlite:///{args.results / 'compare.db'}"

    strategies = [s for s in args.strategies.split(",") if s]
    rows: list[dict[str, Any]] = []
    earlier = json.loads((args.results / "compare.json").read_text(encoding="utf-8")) \
        if args.append and (args.results / "compare.json").exists() else []
    started = time.perf_counter()
    for dataset in [d for d in args.datasets.split(",") if d]:
        try:
            inputs = prepare(dataset, args.results / "data", args.cases, args.seed)
        except DataMissing as missing:
            print(f"skipping {dataset}: {missing}", file=sys.stderr)
            continue
        for strategy in strategies:
            if strategy not in strategy_names():
                rows.append({"dataset": dataset, "strategy": strategy, "note": "not installed"})
                continue
            print(f"{dataset} / {strategy} ...", file=sys.stderr, flush=True)
            row = run_one(dataset, strategy, inputs, args, db, backends)
            rows.append(row)
            print(f"  {table_lines([row])[-1]}", file=sys.stderr, flush=True)
            write_results(args, earlier + rows)

    rows = write_results(args, earlier + rows)
    print("\n".join(table_lines(rows)))
    summary = {"wall_s": round(time.perf_counter() - started, 1), "budget_calls": args.budget_calls,
               "scale": args.scale, "verdicts": verdicts(rows),
               "rows": [{k: r.get(k) for k in ("dataset", "strategy", "seed_acc", "winner_acc", "p_value",
                                               "model_calls", "tokens", "wall_s")} for r in rows]}
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
