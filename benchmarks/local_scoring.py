"""Throughput of the embedded router's scoring (the channel scores `route` uses): naive (one forward per
case x tool) against promptopt's packed scoring (system-prompt KV cache reused, all choices of a batch of
cases packed into one forward), for a short
(~150-token) and a long (~1,500-token) system prompt on the same cases. Ends with one JSON line of figures.

    python benchmarks/local_scoring.py [--cases N]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from promptopt.case import NO_TOOL
from promptopt.optimizer.strategies.demos import render_demos
from promptopt.models.embedded import EmbeddedModel
from promptopt.models.tool_text import render_tool_section, tool_names
from promptopt.runs.case_import import read_cases
from promptopt.tasks import bundled_task


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=24, help="cases per prompt (naive scoring is slow)")
    args = parser.parse_args()
    task = bundled_task("tool-routing")
    cases = [c for path in task.case_files for c in read_cases(path, task.tools)]
    rng = np.random.default_rng(0)
    conversations = [cases[i].messages() for i in rng.choice(len(cases), args.cases, replace=False)]
    choices = [*tool_names(task.tools), NO_TOOL]
    model = EmbeddedModel()
    tools_section = render_tool_section(task.tools)
    short = f"You are FreshMart's shopping assistant.\n\n{tools_section}"
    long_prompt = render_demos(f"{task.seed_prompt}\n\n{tools_section}", cases[::3])
    tokens = lambda text: len(model._encode(text))  # noqa: E731
    long_prompt = _trim_to_tokens(long_prompt, 1500, tokens)
    figures: dict[str, object] = {"cases": args.cases}
    same = True
    for label, prompt in (("short", short), ("long", long_prompt)):
        model.channel_logprobs(prompt, conversations[:1], choices)  # warm the weights
        model._prefix = None
        started = time.perf_counter()
        packed = model.channel_logprobs(prompt, conversations, choices)
        packed_s = time.perf_counter() - started
        started = time.perf_counter()
        naive = model.channel_logprobs_naive(prompt, conversations, choices)
        naive_s = time.perf_counter() - started
        same = same and bool((packed.argmax(1) == naive.argmax(1)).all())
        figures.update({
            f"prompt_tokens_{label}": tokens(prompt),
            f"naive_qps_{label}": args.cases / naive_s,
            f"packed_qps_{label}": args.cases / packed_s,
            f"speedup_{label}": naive_s / packed_s,
            f"max_abs_diff_{label}": float(np.abs(packed - naive).max()),
        })
        print(f"{label:5} prompt {tokens(prompt):5d} tokens: naive {args.cases / naive_s:6.2f} q/s, "
              f"packed {args.cases / packed_s:6.2f} q/s, speedup {naive_s / packed_s:6.1f}x")
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
