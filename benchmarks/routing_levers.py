"""What each lever does to the embedded model: model x routing method x structural operator, on the validation
split of a run's seeded split (never the test split), per language, with the exact McNemar p of each operator
against the seed prompt under the same method. The task is the bundled one as the main command splits it, or a
reference dataset (`--dataset sgd`, `clinc150`, `bfcl`) sampled and split as `compare.py` does at its defaults. The
native router's gate is calibrated on a stratified training sample under each prompt, as a run calibrates it. Ends
with one JSON line of figures.

    python benchmarks/routing_levers.py [--dataset tool-routing] [--cases 400] [--calibration 48]
        [--models qwen2.5-coder-0.5b,smollm2-135m]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from promptopt.case import Case, ToolCall
from promptopt.models.embedded import EmbeddedModel
from promptopt.models.native_routing import calibrate_gate, decide
from promptopt.models.tool_text import tool_names
from promptopt.optimizer.prompt_text import render_demos
from promptopt.optimizer.scorer import CaseResult
from promptopt.optimizer.splits import split_cases, stratified_sample
from promptopt.optimizer.strategies.demos import demo_pool
from promptopt.optimizer.strategies.rules import confusions, language, with_rules, write_rule
from promptopt.runs.case_import import read_cases
from promptopt.statistics import mcnemar_exact
from promptopt.tasks import bundled_task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_tasks import LOADERS, DataMissing  # noqa: E402

Router = Callable[[str, list[Case]], list[str]]


def native_router(model: EmbeddedModel, tools: list[dict], calibration: list[Case], gate: bool) -> Router:
    """Route by call scores; with `gate`, the reply pseudo-tool's bias is calibrated on `calibration` first."""
    names = tool_names(tools)

    def route(prompt: str, cases: list[Case]) -> list[str]:
        bias = np.inf
        if gate:
            scores = model.native_logprobs(prompt, tools, [c.messages() for c in calibration])
            bias = calibrate_gate(scores, names, [c.expected.name for c in calibration])
        return decide(model.native_logprobs(prompt, tools, [c.messages() for c in cases]), names, bias)

    return route


def channel_router(model: EmbeddedModel, tools: list[dict]) -> Router:
    """The SmolLM2 default: the noisy channel, as `route` does it."""
    return lambda prompt, cases: [r.call.name for r in model.route(prompt, tools, [c.messages() for c in cases])]


def operators(seed: str, train: list[Case], seed_choices: list[str], sample: list[Case],
              rng: np.random.Generator) -> dict[str, str]:
    """The prompts each structural operator makes from the seed: 22 stratified demos, rules from the seed's
    confusions on the training sample, and both."""
    demos = stratified_sample([c for c in demo_pool(train) if c not in sample], 22, rng)
    results = {c.id: CaseResult(case_id=c.id, output=ToolCall(choice), score=float(choice == c.expected.name),
                                passed=choice == c.expected.name, feedback="")
               for c, choice in zip(sample, seed_choices)}
    pairs = list(confusions(sample, results).items())[:8]
    rules = [write_rule(e, w, cases[:2]) for (e, w), cases in pairs]
    return {"demos": render_demos(seed, demos), "rules": with_rules(seed, rules),
            "demos+rules": with_rules(render_demos(seed, demos), rules)}


def load_task(dataset: str, limit: int) -> tuple[list[dict[str, Any]], str, list[Case]]:
    """Tools, seed prompt and cases (numbered as a fresh store numbers them) of the bundled task or of a reference
    dataset's balanced sample of `limit` cases (seed 0, as `compare.py` draws it)."""
    if dataset == "tool-routing":
        task = bundled_task("tool-routing")
        tools, seed, parsed = task.tools, task.seed_prompt, [c for path in task.case_files
                                                             for c in read_cases(path, task.tools)]
    else:
        reference = LOADERS[dataset](limit=limit, seed=0)
        with tempfile.TemporaryDirectory() as folder:
            case_file, _, _ = reference.write(Path(folder))
            tools, seed, parsed = reference.tools, reference.seed_prompt, read_cases(case_file, reference.tools)
    return tools, seed, [replace(c, id=i + 1) for i, c in enumerate({c.content_hash(): c for c in parsed}.values())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="tool-routing", choices=["tool-routing", *LOADERS])
    parser.add_argument("--cases", type=int, default=400, help="cases sampled from a reference dataset")
    parser.add_argument("--models", default="qwen2.5-coder-0.5b,smollm2-135m")
    parser.add_argument("--calibration", type=int, default=48, help="training cases the gate is calibrated on")
    parser.add_argument("--always-call", action="store_true", help="also measure the native router without its gate")
    args = parser.parse_args()
    try:
        tools, seed_prompt, cases = load_task(args.dataset, args.cases)
    except DataMissing as missing:
        sys.exit(f"skipped: {missing}")
    splits = split_cases(cases, 0)
    train = [c for c in cases if splits[c.id] == "train"]
    val = [c for c in cases if splits[c.id] == "val"]
    sample = stratified_sample(train, args.calibration, np.random.default_rng(1))
    languages = sorted({language(c.query) for c in val})
    rows = []
    for weights in args.models.split(","):
        model = EmbeddedModel(weights=weights)
        routers = ({"native, calibrated gate": native_router(model, tools, sample, True)}
                   if model.source.routing == "native" else {"channel": channel_router(model, tools)})
        if model.source.routing == "native" and args.always_call:
            routers["native, always call"] = native_router(model, tools, sample, False)
        for method, route in routers.items():
            seed_choices = route(seed_prompt, sample)
            prompts = {"seed": seed_prompt,
                       **operators(seed_prompt, train, seed_choices, sample, np.random.default_rng(2))}
            seed_right = None
            for operator, prompt in prompts.items():
                began = time.perf_counter()
                right = [choice == c.expected.name for c, choice in zip(val, route(prompt, val))]
                seed_right = seed_right or right
                fixed = sum(r and not s for r, s in zip(right, seed_right))
                broken = sum(s and not r for r, s in zip(right, seed_right))
                row = {"dataset": args.dataset, "model": weights, "method": method, "operator": operator,
                       "val_cases": len(val), "accuracy": round(float(np.mean(right)), 3),
                       **{f"accuracy_{lang}": round(float(np.mean([r for r, c in zip(right, val)
                                                                   if language(c.query) == lang])), 3)
                          for lang in languages},
                       "fixed": fixed, "broken": broken, "p_vs_seed": round(mcnemar_exact(fixed, broken), 4),
                       "seconds": round(time.perf_counter() - began, 1)}
                rows.append(row)
                by_language = "".join(f"  {lang} {row[f'accuracy_{lang}']:6.1%}" for lang in languages)
                print(f"{weights:20} {method:24} {operator:12} {row['accuracy']:6.1%}{by_language}  +{fixed}/-{broken}"
                      f"  p={row['p_vs_seed']:.3g}", flush=True)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
