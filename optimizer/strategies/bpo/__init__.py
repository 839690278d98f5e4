"""BPO (Cheng et al. 2023, "Black-Box Prompt Optimization") as a search strategy.

Each step: `feedback_groups` feedback groups are drawn from the incumbent's training results (`group_size`
cases it gets wrong, with the expected and the chosen tool, and `group_size` it gets right); the optimizer model
analyses each step by step and writes an improved prompt; the pairs are filtered (`bpo_pairs.pair_rejection`)
and stored, kept or not. Then the rewriter rewrites the incumbent: by default the prompted rewriter on the
optimizer model, shown the `demonstrations` stored pairs most similar to the incumbent; with `rewriter` (a
directory from `promptopt bpo train`) the fine-tuned one. Stable mode samples one rewrite at low temperature,
aggressive mode `samples` (4) at 0.9. Valid rewrites are scored on the incumbent's training cases and the best
goes to the normal acceptance rules.
"""
from __future__ import annotations

from collections import Counter

from promptopt.optimizer.strategies.bpo.pairs import construct_pairs, feedback_from_results
from promptopt.optimizer.strategies.bpo.rewriter import MODES, Mode, Rewriter, load_rewriter, prompted_rewriter
from promptopt.optimizer.candidates import Candidate
from promptopt.optimizer.strategies.opro import normalized
from promptopt.optimizer.strategy import Proposal, SearchContext


class BpoStrategy:
    """Feedback pairs, then rewrites of the incumbent by a prompted or fine-tuned rewriter (see the module
    docstring)."""

    name = "bpo"

    def __init__(self, mode: str = "stable", samples: int | None = None, temperature: float | None = None,
                 feedback_groups: int = 2, group_size: int = 3, demonstrations: int = 2, rewriter: str | None = None,
                 reply_tokens: int = 1024) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}")
        if samples is not None and mode == "stable" and samples != 1:
            raise ValueError("stable mode takes one sample; use --mode aggressive for more")
        base = MODES[mode]
        self.mode = Mode(samples or base.samples, base.temperature if temperature is None else temperature)
        self.mode_name = mode
        self.feedback_groups = feedback_groups
        self.group_size = group_size
        self.demonstrations = demonstrations
        self.rewriter_path = rewriter
        self.reply_tokens = reply_tokens
        self._finetuned: Rewriter | None = None

    def expected_calls(self, n_train: int, steps: int) -> int:
        """Per step: every rewrite scored on the incumbent's training sample (at most 48 cases)."""
        return steps * self.mode.samples * min(48, n_train)

    def propose(self, context: SearchContext, step: int) -> list[Proposal]:
        incumbent = context.incumbent
        cases = [c for c in context.train if c.id in context.incumbent_train]
        groups = feedback_from_results(incumbent.prompt, cases, context.incumbent_train, self.feedback_groups,
                                       self.group_size, context.rng)
        pairs = construct_pairs(groups, context.ask_optimizer, context.tool_names, 0.0, self.reply_tokens,
                                context.max_chars)
        pair_ids = context.store.add_bpo_pairs(context.run_id, pairs)
        kept = sum(p.kept for p in pairs)
        rewriter = self._rewriter(context)
        completions = rewriter.rewrite(
            incumbent.prompt, self.mode, self.reply_tokens,
            ask=lambda requests, temperature, tokens: context.ask_optimizer(requests, temperature, tokens,
                                                                            model=rewriter.backend))
        counts = {"groups": len(groups), "pairs": len(pairs), "pairs_kept": kept, "samples": len(completions),
                  "failed": 0, "duplicates": 0, "invalid": 0, "scored": 0}
        reasons: Counter[str] = Counter()
        seen = {normalized(incumbent.prompt)}
        proposals = []
        for index, completion in enumerate(completions):
            if completion.error:
                counts["failed"] += 1
                continue
            if normalized(completion.text) in seen:
                counts["duplicates"] += 1
                continue
            seen.add(normalized(completion.text))
            candidate = Candidate(
                prompt=completion.text, operator=f"bpo-{rewriter.kind}",
                parent_ids=[incumbent.id] if incumbent.id is not None else [],
                rationale=f"BPO step {step}: {rewriter.kind} rewriter, {self.mode_name} sample {index + 1}",
                details={"parent": incumbent.id, "step": step, "rewriter": rewriter.kind, "source": rewriter.source,
                         "mode": self.mode_name, "temperature": self.mode.temperature, "sample": index,
                         "pair_ids": pair_ids, "demonstrations": len(rewriter.demonstrations)},
            )
            if context.register(candidate, step) is None:
                counts["invalid"] += 1
                reasons[context.store.candidate(candidate.id).rejection.split(":")[0]] += 1
                continue
            results = context.scorer.score(candidate.id, candidate.prompt, cases, label=f"step {step} bpo rewrite")
            proposals.append(Proposal(candidate, results))
            counts["scored"] += 1
        context.notes["bpo"] = counts
        context.notes["pair_ids"] = pair_ids
        pair_reasons = Counter(p.rejection.split(":")[0] for p in pairs if not p.kept)
        context.notes["summary"] = (
            f"bpo: {len(groups)} feedback group(s) -> {kept} of {len(pairs)} pairs kept{_why(pair_reasons)}; "
            f"{counts['samples']} {self.mode_name} rewrite(s) from the {rewriter.kind} rewriter: {counts['scored']} "
            f"scored, {counts['invalid']} invalid{_why(reasons)}, {counts['duplicates']} duplicates, "
            f"{counts['failed']} failed calls")
        return sorted(proposals, key=lambda p: -p.train_accuracy)

    def _rewriter(self, context: SearchContext) -> Rewriter:
        """The fine-tuned rewriter (loaded once), else a prompted one with pairs retrieved for the incumbent."""
        if self.rewriter_path:
            if self._finetuned is None:
                self._finetuned = load_rewriter(self.rewriter_path)
            return self._finetuned
        if context.optimizer_model is None:
            raise RuntimeError("the prompted BPO rewriter needs an optimizer model")
        stored = [(p.original, p.optimized) for p in context.store.bpo_pairs()]
        return prompted_rewriter(context.optimizer_model, stored, context.incumbent.prompt, self.demonstrations)


def _why(reasons: Counter[str]) -> str:
    """` (2x reason; 1x other)`, most frequent first, or nothing."""
    return " (" + "; ".join(f"{n}x {r}" for r, n in reasons.most_common()) + ")" if reasons else ""
