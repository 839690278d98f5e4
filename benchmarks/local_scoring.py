"""Throughput of the embedded router's scoring (the scores `route` uses: native call scores for the default
Qwen2.5-Coder-0.5B, channel scores for SmolLM2): naive (one forward per case x choice) against promptopt's packed
scoring (system-prompt KV cache reused, all choices of a batch of cases packed into one forward), for a short and a
long (~1,500 more tokens of demos) system prompt. Naive scoring is timed on `--cases` cases and packed scoring on
`--packed-cases` (its first cases are the same, and must get the same choices): a run scores a prompt on dozens
of cases, so packed throughput is measured where the one system-prompt encoding is shared as in a run. Ends with
one JSON line of figures.

    python benchmarks/local_scoring.py [--cases N] [--packed-cases M] [--weights qwen2.5-coder-0.5b|smollm2-135m]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from promptopt.case import NO_TOOL
from promptopt.optimizer.prompt_text import render_demos
from promptopt.models.embedded import EmbeddedModel
from promptopt.models.native_routing import routing_tools
from promptopt.models.tool_text import render_tool_section, tool_names
from promptopt.runs.case_import import read_cases
from promptopt.tasks import bundled_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=3, help="cases per prompt for naive scoring (it is slow)")
    parser.add_argument("--packed-cases", type=int, default=48, help="cases per prompt for packed scoring")
    parser.add_argument("--weights", default=None, help="embedded weights (default: the default model's)")
    args = parser.parse_args()
    task = bundled_task("tool-routing")
    cases = [c for path in task.case_files for c in read_cases(path, task.tools)]
    rng = np.random.default_rng(0)
    conversations = [cases[i].messages()
                     for i in rng.choice(len(cases), max(args.cases, args.packed_cases), replace=False)]
    choices = [*tool_names(task.tools), NO_TOOL]
    model = EmbeddedModel(weights=args.weights)
    native = model.source.routing == "native"
    tools_section = render_tool_section(task.tools)
    short = f"You are FreshMart's shopping assistant.\n\n{tools_section}"
    long_prompt = render_demos(f"{task.seed_prompt}\n\n{tools_section}", cases[::3])
    tokens = lambda text: len(model._encode(text))  # noqa: E731
    long_prompt = _trim_to_tokens(long_prompt, 1500, tokens)
    figures: dict[str, object] = {"cases": args.cases, "packed_cases": len(conversations),
                                  "weights": model.source.key, "routing": model.source.routing}
    sample = conversations[:args.cases]  # what naive scoring is timed on
    if native:
        short, long_prompt = "You are FreshMart's shopping assistant.", render_demos(task.seed_prompt, cases[::3])
        tokens = lambda text: len(model._encode(model._system_text(text, routing_tools(task.tools))))  # noqa: E731
        long_prompt = _trim_to_tokens(long_prompt, tokens(short) + 1500, tokens)

        def score(prompt: str, naive: bool) -> np.ndarray:
            return model.native_logprobs(prompt, task.tools, sample if naive else conversations, naive=naive)
    else:
        def score(prompt: str, naive: bool) -> np.ndarray:
            if naive:
                return model.channel_logprobs_naive(prompt, sample, choices)
            return model.channel_logprobs(prompt, conversations, choices)
    same = True
    for label, prompt in (("short", short), ("long", long_prompt)):
        model._load()  # warm the weights
        model._prefix = None
        started = time.perf_counter()
        packed = score(prompt, False)
        packed_s = time.perf_counter() - started
        started = time.perf_counter()
        naive = score(prompt, True)
        naive_s = time.perf_counter() - started
        packed = packed[:len(naive)]
        same = same and bool((packed.argmax(1) == naive.argmax(1)).all())
        naive_qps, packed_qps = len(naive) / naive_s, len(conversations) / packed_s
        figures.update({
            f"prompt_tokens_{label}": tokens(prompt),
            f"naive_qps_{label}": naive_qps,
            f"packed_qps_{label}": packed_qps,
            f"speedup_{label}": packed_qps / naive_qps,
            f"max_abs_diff_{label}": float(np.abs(packed - naive).max()),
        })
        print(f"{label:5} prompt {tokens(prompt):5d} tokens: naive {naive_qps:6.3f} q/s, "
              f"packed {packed_qps:6.2f} q/s, speedup {packed_qps / naive_qps:6.1f}x", flush=True)
    figures["same_choices"] = same
    print(json.dumps(figures))


def _trim_to_tokens(text: str, limit: int, count) -> str:
    """Cut whole lines off the end until the text is at most `limit` tokens."""
    lines = text.splitlines()
    while count("\n".join(lines)) > limit:
        lines.pop()
    return "\n".join(lines)


if __name__ == "__main__":
    main()
