"""What each lever does to the embedded model on the bundled task: model x routing method x structural operator,
on the validation split of the main command's seeded split (never the test split), per language, with the exact
McNemar p of each operator against the seed prompt under the same method. The native router's gate is calibrated
on a stratified training sample under each prompt, as a run calibrates it. Ends with one JSON line of figures.

    python benchmarks/routing_levers.py [--models qwen2.5-coder-0.5b,smollm2-135m] [--calibration 48]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from typing import Callable

import numpy as np

from promptopt.case import Case, ToolCall
from promptopt.models.embedded import EmbeddedModel
from promptopt.models.native_routing import calibrate_gate, decide
from promptopt.models.tool_text import tool_names
from promptopt.optimizer.prompt_text import render_demos
from promptopt.optimizer.splits import split_cases, stratified_sample
from promptopt.optimizer.statistics import mcnemar_exact
from promptopt.optimizer.strategies.demos import demo_pool
from promptopt.optimizer.strategies.rules import confusions, language, with_rules, write_rule
from promptopt.optimizer.scorer import CaseResult
from promptopt.runs.case_import import read_cases
from promptopt.tasks import bundled_task

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="qwen2.5-coder-0.5b,smollm2-135m")
    parser.add_argument("--calibration", type=int, default=48, help="training cases the gate is calibrated on")
    parser.add_argument("--always-call", action="store_true", help="also measure the native router without its gate")
    args = parser.parse_args()
    task = bundled_task("tool-routing")
    parsed = [c for path in task.case_files for c in read_cases(path, task.tools)]
    cases = [replace(c, id=i + 1) for i, c in enumerate({c.content_hash(): c for c in parsed}.values())]
    splits = split_cases(cases, 0)
    train = [c for c in cases if splits[c.id] == "train"]
    val = [c for c in cases if splits[c.id] == "val"]
    sample = stratified_sample(train, args.calibration, np.random.default_rng(1))
    rows = []
    for weights in args.models.split(","):
        model = EmbeddedModel(weights=weights)
        routers = ({"native, calibrated gate": native_router(model, task.tools, sample, True)}
                   if model.source.routing == "native" else {"channel": channel_router(model, task.tools)})
        if model.source.routing == "native" and args.always_call:
            routers["native, always call"] = native_router(model, task.tools, sample, False)
        for method, route in routers.items():
            seed_choices = route(task.seed_prompt, sample)
            prompts = {"seed": task.seed_prompt,
                       **operators(task.seed_prompt, train, seed_choices, sample, np.random.default_rng(2))}
            seed_right = None
            for operator, prompt in prompts.items():
                began = time.perf_counter()
                right = [choice == c.expected.name for c, choice in zip(val, route(prompt, val))]
                seed_right = seed_right or right
                fixed = sum(r and not s for r, s in zip(right, seed_right))
                broken = sum(s and not r for r, s in zip(right, seed_right))
                row = {"model": weights, "method": method, "operator": operator, "val_cases": len(val),
                       "accuracy": round(float(np.mean(right)), 3),
                       **{f"accuracy_{lang}": round(float(np.mean([r for r, c in zip(right, val)
                                                                   if language(c.query) == lang])), 3)
                          for lang in ("en", "zh")},
                       "fixed": fixed, "broken": broken, "p_vs_seed": round(mcnemar_exact(fixed, broken), 4),
                       "seconds": round(time.perf_counter() - began, 1)}
                rows.append(row)
                print(f"{weights:20} {method:24} {operator:12} {row['accuracy']:6.1%}  en {row['accuracy_en']:6.1%}"
                      f"  zh {row['accuracy_zh']:6.1%}  +{fixed}/-{broken}  p={row['p_vs_seed']:.3g}", flush=True)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
