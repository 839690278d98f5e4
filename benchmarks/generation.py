"""Generating a step's samples on the embedded model: `--samples` replies (default 8) of up to `--max-tokens` new
tokens (default 200) at temperature 1.0 to one OPRO meta-prompt of the bundled task (~800 tokens, built as
`optimizer/strategies/opro.py` builds it: the task and tools, two scored earlier prompts' editable text, three
exemplar cases, the note of the fixed parts and the ask), one `generate` per sample (what `generate_many` did
before batching) against `generate_many`'s batched path (the prompt encoded once, its key/value cache repeated for every sample, all
samples decoded together). The response cache is off.

By default every sample is made to write all `--max-tokens` tokens (its end of turn suppressed, as
`min_new_tokens` does), so both ways do the same work; with `--stop-at-eos` samples end where the model ends them
(then the token counts differ, and tokens per second is the fair figure). Wall time is the figure; the process's
CPU seconds are reported too, as they are less swayed by another process busy on the same cores. Prints the
figures, and ends with one JSON line `{"samples", "sequential_s", "batched_s", "speedup", ...}`; `--out FILE` also
writes that line there.

    python benchmarks/generation.py [--samples 8] [--max-tokens 200] [--weights NAME] [--stop-at-eos] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import time
import zlib
from pathlib import Path

import torch

from promptopt.models.embedded import EmbeddedModel
from promptopt.models.tool_text import tool_names
from promptopt.optimizer.prompt_parts import PromptParts
from promptopt.optimizer.prompt_text import PROMPT_TAGS
from promptopt.optimizer.strategies.opro import META_TEXT
from promptopt.runs.case_import import read_cases
from promptopt.tasks import bundled_task


def meta_prompt() -> str:
    """An OPRO meta-prompt for the bundled tool-routing task, part by part as `OproStrategy.meta_prompt` writes
    it: the intro with the tools, two earlier prompts' editable text with scores (worst first), three exemplar
    cases, the note of the fixed parts and the ask."""
    text = META_TEXT["en"]
    task = bundled_task("tool-routing")
    cases = [case for path in task.case_files for case in read_cases(path, task.tools)]
    opened, closed = PROMPT_TAGS
    tools = "\n".join(f"- {name}" for name in [*tool_names(task.tools), "none"])
    history = [
        (task.seed_prompt, 61),
        (task.seed_prompt.replace("Use them when they help:", "Call exactly the one tool the request needs:"), 64),
    ]
    parts = [text["intro"].format(open=opened, close=closed, tools=tools)]
    names = tool_names(task.tools)
    parts += [text["pair"].format(prompt=PromptParts.of(prompt, names).editable, score=score)
              for prompt, score in history]
    parts.append(text["examples"])
    parts += [text["request"].format(query=case.query, tool=case.expected.name) for case in cases[:30:10]]
    parts.append(PromptParts.of(task.seed_prompt, names).note())
    parts.append(text["ask"].format(open=opened, close=closed, names=""))
    return "\n\n".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=8, help="samples of the meta-prompt")
    parser.add_argument("--max-tokens", type=int, default=200, help="new tokens per sample (at most)")
    parser.add_argument("--weights", default=None, help="embedded weights (default: the default model's)")
    parser.add_argument("--stop-at-eos", action="store_true",
                        help="let samples end at their end of turn instead of writing all --max-tokens")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON line to this file")
    args = parser.parse_args()
    model = EmbeddedModel(weights=args.weights)  # no response cache: every sample is generated
    model._load()
    messages = [{"role": "user", "content": meta_prompt()}]
    prompt_tokens = len(model._prompt_ids(messages))
    print(f"meta-prompt: {prompt_tokens} tokens; {args.samples} samples of "
          f"{'up to ' if args.stop_at_eos else ''}{args.max_tokens} new tokens at temperature 1.0", flush=True)
    model._complete(messages, "", 2, 1.0)  # warm up: first-call costs are neither way's
    if not args.stop_at_eos:  # every generate call from here on writes all its tokens
        model._model.generation_config.min_new_tokens = args.max_tokens

    key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
    started, cpu = time.perf_counter(), time.process_time()
    sequential = [model._complete(messages, "", args.max_tokens, 1.0, zlib.crc32(key.encode("utf-8")) + index)
                  for index in range(args.samples)]
    sequential_s, sequential_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    sequential_tokens = sum(tokens_out for _, _, tokens_out in sequential)
    print(f"sequential: {sequential_s:7.1f} s ({sequential_cpu_s:7.1f} s of CPU), {sequential_tokens} tokens, "
          f"{sequential_tokens / sequential_s:6.1f} tokens/s", flush=True)

    started, cpu = time.perf_counter(), time.process_time()
    batched = model.generate_many([messages] * args.samples, temperature=1.0, max_tokens=args.max_tokens)
    batched_s, batched_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    batched_tokens = sum(c.record.tokens_out for c in batched)
    print(f"batched:    {batched_s:7.1f} s ({batched_cpu_s:7.1f} s of CPU), {batched_tokens} tokens, "
          f"{batched_tokens / batched_s:6.1f} tokens/s", flush=True)
    figures = {
        "samples": args.samples, "sequential_s": round(sequential_s, 2), "batched_s": round(batched_s, 2),
        "speedup": round(sequential_s / batched_s, 2),
        "tokens_per_s_speedup": round((batched_tokens / batched_s) / (sequential_tokens / sequential_s), 2),
        # CPU seconds of this process: less swayed than wall time by another process on the same cores
        "sequential_cpu_s": round(sequential_cpu_s, 2), "batched_cpu_s": round(batched_cpu_s, 2),
        "cpu_speedup": round(sequential_cpu_s / batched_cpu_s, 2), "threads": torch.get_num_threads(),
        "prompt_tokens": prompt_tokens, "max_new_tokens": args.max_tokens, "full_length": not args.stop_at_eos,
        "sequential_tokens": sequential_tokens, "batched_tokens": batched_tokens,
        "distinct_batched_samples": len({c.text for c in batched}), "weights": model.source.key,
    }
    print(f"speedup {figures['speedup']}x ({figures['tokens_per_s_speedup']}x in tokens per second)")
    line = json.dumps(figures)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
