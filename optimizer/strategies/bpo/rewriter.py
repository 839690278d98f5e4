"""BPO's rewriter, which turns a prompt into an improved one in one call, and its training.

Two kinds behind one interface (`Rewriter.messages` and `Rewriter.backend`): prompted, any chat model shown
the stored pairs most similar to the prompt as demonstrations; and fine-tuned, a small causal LM trained on
the pairs by `train_rewriter` (`promptopt bpo train`) and loaded from its directory by `load_rewriter`. Modes:
stable (one sample at low temperature) and aggressive (several samples at a higher one; in a run the scorer
keeps the best).
"""
from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from promptopt.models.base import Completion, ModelBackend
from promptopt.models.embedded_weights import require_embedded_libraries
from promptopt.optimizer.strategies.bpo.pairs import REWRITER_SYSTEM, Ask, chat_example

METADATA_FILE = "rewriter.json"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


@dataclass(frozen=True)
class Mode:
    """How many rewrites to sample, and at which temperature."""

    samples: int
    temperature: float


MODES = {"stable": Mode(samples=1, temperature=0.2), "aggressive": Mode(samples=4, temperature=0.9)}


@dataclass
class Rewriter:
    """A model that rewrites prompts: `kind` is prompted or fine-tuned; `demonstrations` are the (original,
    optimized) pairs shown before the prompt (none for a fine-tuned rewriter, which learned them)."""

    kind: str
    backend: ModelBackend
    demonstrations: list[tuple[str, str]] = field(default_factory=list)
    source: str = ""

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """The chat request that asks for a rewrite of `prompt`, in the training format."""
        turns = [{"role": "system", "content": REWRITER_SYSTEM}]
        for original, optimized in self.demonstrations:
            turns += chat_example(original, optimized)["messages"][1:]
        return [*turns, {"role": "user", "content": prompt}]

    def rewrite(self, prompt: str, mode: Mode, max_tokens: int = 1024, ask: Ask | None = None) -> list[Completion]:
        """`mode.samples` rewrites of `prompt` (through `ask` when given, e.g. to charge a run's budget)."""
        ask = ask or (lambda requests, temperature, tokens: self.backend.generate_many(
            requests, temperature=temperature, max_tokens=tokens, role="optimizer"))
        completions = ask([self.messages(prompt)] * mode.samples, mode.temperature, max_tokens)
        return [Completion(text=c.text.strip(), record=c.record, error=c.error) for c in completions]


def retrieve(pairs: Sequence[tuple[str, str]], prompt: str, k: int) -> list[tuple[str, str]]:
    """The `k` pairs whose original is most similar to `prompt` (word-set Jaccard; newer pairs win ties), most
    similar last, so it sits next to the prompt."""
    words = set(re.findall(r"\w+", prompt.lower()))

    def similarity(index: int) -> tuple[float, int]:
        other = set(re.findall(r"\w+", pairs[index][0].lower()))
        return len(words & other) / max(len(words | other), 1), index

    ranked = sorted(range(len(pairs)), key=similarity, reverse=True)[:k]
    return [pairs[i] for i in reversed(ranked)]


def prompted_rewriter(backend: ModelBackend, pairs: Sequence[tuple[str, str]], prompt: str,
                      demonstrations: int = 2) -> Rewriter:
    """A prompted rewriter on `backend`, shown the stored pairs most similar to `prompt`."""
    return Rewriter("prompted", backend, retrieve(pairs, prompt, demonstrations), source=backend.name)


def load_rewriter(path: str | Path) -> Rewriter:
    """A fine-tuned rewriter from a directory written by `train_rewriter` (or any causal LM directory)."""
    require_embedded_libraries()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptopt.models.embedded import EmbeddedModel

    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path}: no model there (expected a directory written by `promptopt bpo train`)")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    model.eval()
    backend = EmbeddedModel(model=model, tokenizer=tokenizer)
    backend.name = f"rewriter:{path.name}"
    return Rewriter("fine-tuned", backend, source=str(path))


@dataclass
class TrainingResult:
    """What `train_rewriter` did: mean loss over the pairs before and after, each step's loss, the directory."""

    start_loss: float
    end_loss: float
    losses: list[float]
    steps: int
    seconds: float
    output_dir: Path


def train_rewriter(pairs: Sequence[tuple[str, str]], output_dir: str | Path, base: str | Path | None = None,
                   steps: int | None = None, epochs: int = 1, lr: float | None = None, max_length: int = 512,
                   lora: bool = True, seed: int = 0, progress: Callable[[str], None] | None = None
                   ) -> TrainingResult:
    """Fine-tune a causal LM on (original -> optimized) pairs in chat format, loss on the rewrite only, batch
    size 1 on CPU; save model, tokenizer and `rewriter.json` to `output_dir`.

    `base`: a model directory (default: the embedded model's fp32 weights: Qwen2.5-Coder-0.5B-Instruct unless $PROMPTOPT_EMBEDDED_MODEL picks another). `steps` overrides `epochs`. `lr`
    defaults to 5e-5 for a full fine-tune, 1e-3 for LoRA (rank 8 on the attention projections, merged before
    saving, so the directory loads as a plain model). Sequences are cut to `max_length` tokens."""
    import torch

    say = progress or (lambda message: None)
    began = time.monotonic()
    torch.manual_seed(seed)
    model, tokenizer = _load_base(base)
    examples = [e for e in (_encode_pair(tokenizer, o, p, max_length) for o, p in pairs) if e is not None]
    if not examples:
        raise ValueError("no training pairs (every pair was empty after truncation)")
    total = steps or epochs * len(examples)
    if lora:
        model = _with_lora(model)
    lr = lr if lr is not None else (1e-3 if lora else 5e-5)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    start_loss = _mean_loss(model, examples)
    say(f"{len(examples)} pairs, {total} steps, lr {lr:g}, {'LoRA' if lora else 'full fine-tune'}; "
        f"start loss {start_loss:.4f}")
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    losses = []
    model.train()
    for step in range(1, total + 1):
        if not order:
            order = torch.randperm(len(examples), generator=generator).tolist()
        ids, labels = examples[order.pop()]
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss.detach()))
        say(f"step {step}/{total}: loss {losses[-1]:.4f}")
    end_loss = _mean_loss(model, examples)
    if lora:
        model = model.merge_and_unload()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    seconds = time.monotonic() - began
    metadata = {"kind": "bpo-rewriter", "base": str(base or "embedded"), "method": "lora" if lora else "full",
                "pairs": len(examples), "steps": total, "lr": lr, "max_length": max_length, "seed": seed,
                "start_loss": start_loss, "end_loss": end_loss, "losses": losses, "seconds": round(seconds, 1),
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    (output_dir / METADATA_FILE).write_text(json.dumps(metadata, indent=2), encoding="utf-8")
    say(f"start loss {start_loss:.4f}, end loss {end_loss:.4f}; saved to {output_dir}")
    return TrainingResult(start_loss, end_loss, losses, total, seconds, output_dir)


def _load_base(base: str | Path | None) -> tuple[Any, Any]:
    require_embedded_libraries()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if base is None:
        from promptopt.models.embedded_weights import load_embedded

        return load_embedded()
    tokenizer = AutoTokenizer.from_pretrained(base)
    return AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32), tokenizer


def _with_lora(model: Any) -> Any:
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise RuntimeError("LoRA needs peft: pip install peft (or train with --full)") from None
    return get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=LORA_TARGETS,
                                            task_type="CAUSAL_LM"))


def _encode_pair(tokenizer: Any, original: str, optimized: str, max_length: int) -> tuple[Any, Any] | None:
    """Token ids and labels of one pair (-100 on the request, so only the rewrite is learned), cut to
    `max_length`: the rewrite keeps up to half of it, the request its end."""
    import torch

    messages = chat_example(original, optimized)["messages"][:2]
    request = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    request_ids = tokenizer(request, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(optimized, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    answer_ids = answer_ids[: max(max_length // 2, max_length - len(request_ids))]
    request_ids = request_ids[-(max_length - len(answer_ids)):]
    if not answer_ids or not optimized.strip():
        return None
    ids = torch.tensor([request_ids + answer_ids])
    labels = torch.tensor([[-100] * len(request_ids) + answer_ids])
    return ids, labels


def _mean_loss(model: Any, examples: Sequence[tuple[Any, Any]]) -> float:
    import torch

    model.eval()
    with torch.no_grad():
        total = sum(float(model(input_ids=ids, labels=labels).loss) for ids, labels in examples)
    model.train()
    return total / len(examples)
