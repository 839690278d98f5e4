"""BPO (Cheng et al. 2023, "Black-Box Prompt Optimization") as a search strategy.

Each step: `feedback_groups` feedback groups are drawn from the incumbent's training results (`group_size`
cases it gets wrong, with the expected and the chosen tool, and `group_size` it gets right); the optimizer model
analyses each step by step and writes an improved prompt; the pairs are filtered (`bpo_pairs.pair_rejection`)
and stored, kept or not. Then the rewriter rewrites the incumbent's editable text (`PromptParts`), each rewrite
spliced back into its fixed parts: by default the prompted rewriter on the
optimizer model, shown the `demonstrations` stored pairs most similar to the incumbent; with `rewriter` (a
directory from `promptopt bpo train`) the fine-tuned one. Stable mode samples one rewrite at low temperature,
aggressive mode `samples` (4) at 0.9. Valid rewrites are scored on the incumbent's training cases and the best
goes to the normal acceptance rules.
"""
from __future__ import annotations

from collections import Counter

from promptopt.optimizer.candidates import Candidate
from promptopt.optimizer.options import Option, OptionError
from promptopt.optimizer.prompt_text import normalized
from promptopt.optimizer.strategies.bpo.pairs import construct_pairs, feedback_from_results
from promptopt.optimizer.strategies.bpo.rewriter import MODES, Mode, Rewriter, load_rewriter, prompted_rewriter
from promptopt.optimizer.strategy import (
    OptimizerWork,
    Proposal,
    SearchContext,
    SearchSize,
    StrategyBase,
    reasons_text,
)


class BpoStrategy(StrategyBase):
    """Feedback pairs, then rewrites of the incumbent by a prompted or fine-tuned rewriter (see the module
    docstring)."""

    name = "bpo"
    options = (
        Option("mode", str, "stable", "stable (1 rewrite at temperature 0.2) or aggressive (--samples rewrites at "
               "0.9, the best kept by the scorer)", choices=tuple(sorted(MODES))),
        Option("samples", int, None, "rewrites per step in aggressive mode", minimum=1,
               default_text=str(MODES["aggressive"].samples)),
        Option("temperature", float, None, "sampling temperature of the rewriter", minimum=0,
               default_text="the mode's"),
        Option("feedback_groups", int, 2, "feedback groups turned into pairs per step", minimum=0),
        Option("group_size", int, 3, "wrong and right cases in each feedback group (each)", minimum=1),
        Option("demonstrations", int, 2, "stored pairs shown to the prompted rewriter", minimum=0),
        Option("rewriter", str, None, "a fine-tuned rewriter directory (from `promptopt bpo train`) instead of the "
               "prompted rewriter on --optimizer-model", directory=True, default_text="the prompted rewriter"),
        Option("reply_tokens", int, 1024, "longest analysis and rewrite the optimizer model may write", minimum=1),
    )
    mode: str
    samples: int | None
    temperature: float | None
    feedback_groups: int
    group_size: int
    demonstrations: int
    rewriter: str | None
    reply_tokens: int

    def __init__(self, **given) -> None:
        super().__init__(**given)
        if self.samples is not None and self.mode == "stable" and self.samples != 1:
            raise OptionError("stable mode takes one sample; use --mode aggressive for more")
        base = MODES[self.mode]
        self.sampling = Mode(self.samples or base.samples,
                             base.temperature if self.temperature is None else self.temperature)
        self._finetuned: Rewriter | None = None

    def expected_calls(self, size: SearchSize) -> int:
        """Per step: every rewrite scored on the cases the incumbent was scored on in training."""
        return size.steps * self.sampling.samples * size.incumbent_sample

    def expected_optimizer_work(self, size: SearchSize) -> OptimizerWork:
        """Per step: one analysis per feedback group, then the rewrites."""
        return OptimizerWork(size.steps * (self.feedback_groups + self.sampling.samples), self.reply_tokens)

    def propose(self, context: SearchContext, step: int) -> list[Proposal]:
        incumbent = context.incumbent
        cases = [c for c in context.train if c.id in context.incumbent_train]
        groups = feedback_from_results(incumbent.prompt, cases, context.incumbent_train, self.feedback_groups,
                                       self.group_size, context.rng)
        pairs = construct_pairs(groups, context.ask_optimizer, context.tool_names, 0.0, self.reply_tokens,
                                context.max_chars)
        pair_ids = context.artifacts.add_bpo_pairs(pairs)
        kept = sum(p.kept for p in pairs)
        parts = context.parts(incumbent.prompt)
        rewriter = self._rewriter(context, parts.editable)
        completions = rewriter.rewrite(
            parts.editable, self.sampling, self.reply_tokens,
            ask=lambda requests, temperature, tokens: context.ask_optimizer(requests, temperature, tokens,
                                                                            model=rewriter.backend))

        def build(index: int, text: str) -> Candidate:
            return Candidate(
                prompt=parts.splice(text), operator=f"bpo-{rewriter.kind}",
                parent_ids=[incumbent.id] if incumbent.id is not None else [],
                rationale=f"BPO step {step}: {rewriter.kind} rewriter, {self.mode} sample {index + 1}",
                details={"parent": incumbent.id, "step": step, "rewriter": rewriter.kind, "source": rewriter.source,
                         "mode": self.mode, "temperature": self.sampling.temperature, "sample": index,
                         "pair_ids": pair_ids, "demonstrations": len(rewriter.demonstrations)},
            )

        proposals, tally = context.score_replies(completions, build, cases, step, lambda _: f"step {step} bpo rewrite",
                                                 seen={normalized(incumbent.prompt)})
        context.notes["bpo"] = {"groups": len(groups), "pairs": len(pairs), "pairs_kept": kept, **tally.to_json()}
        context.notes["pair_ids"] = pair_ids
        pair_reasons = Counter(p.rejection.split(":")[0] for p in pairs if not p.kept)
        context.notes["summary"] = (
            f"bpo: {len(groups)} feedback group(s) -> {kept} of {len(pairs)} pairs kept{reasons_text(pair_reasons)}; "
            f"{tally.samples} {self.mode} rewrite(s) from the {rewriter.kind} rewriter: {tally.scored} "
            f"scored, {tally.invalid} invalid{tally.why()}, {tally.duplicates} duplicates, "
            f"{tally.failed} failed calls")
        return sorted(proposals, key=lambda p: -p.train_accuracy)

    def _rewriter(self, context: SearchContext, editable: str) -> Rewriter:
        """The fine-tuned rewriter (loaded once), else a prompted one with the pairs retrieved for the incumbent's
        `editable` text."""
        if self.rewriter:
            if self._finetuned is None:
                self._finetuned = load_rewriter(self.rewriter)
            return self._finetuned
        if context.optimizer_model is None:
            raise RuntimeError("the prompted BPO rewriter needs an optimizer model")
        stored = [(p.original, p.optimized) for p in context.artifacts.bpo_pairs()]
        return prompted_rewriter(context.optimizer_model, stored, editable, self.demonstrations)

