"""APO / ProTeGi (Pryzant et al. 2023, "Automatic Prompt Optimization with Gradient Descent and Beam Search").

Each round, for every prompt in the beam: score it on a minibatch of `minibatch` training cases; from its
failures, ask the optimizer model for `gradients` textual gradients (each call sees its own sample of
`error_sample` failures and says why the prompt gets them wrong); for each gradient, one edited prompt that
fixes it; for each edit, `paraphrases` Monte-Carlo paraphrases; keep at most `max_successors` successors per
parent. The optimizer model sees and writes the prompts' editable text only (`PromptParts`: the tool list,
protected regions and examples are described, never copied) and every reply is spliced back into the parent's
fixed parts. Invalid successors (a tool dropped, too long) are discarded before any evaluation. The next beam of
`beam_width` is chosen among parents and successors by a best-arm bandit (`promptopt.optimizer.bandits`; UCB by
default) that spends at most `eval_budget` pulls, a pull scoring one arm on `pull_size` random training cases.
Every successor stores its lineage: parent, gradient, the failures the gradient was drawn from, and whether it is
an edit or a paraphrase. Defaults follow the paper.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from promptopt.case import Case
from promptopt.optimizer.bandits import ALGORITHMS, select_arms
from promptopt.optimizer.candidates import Candidate
from promptopt.optimizer.options import Option, OptionError
from promptopt.optimizer.prompt_text import normalized, tagged_pieces
from promptopt.optimizer.scorer import CaseResult
from promptopt.optimizer.strategy import OptimizerWork, Proposal, SearchContext, SearchSize, StrategyBase, Tally

START, END = "<START>", "<END>"

GRADIENT_REQUEST = (
    "I am writing the system prompt of an assistant that reads each user request and calls one of these tools, "
    "or none when no tool fits: {tools}.\n\nThe instructions of my current prompt are:\n\"{prompt}\"\n\n{fixed}"
    "With it, the assistant gets these requests wrong:\n{errors}\n\n"
    "Give one reason why the prompt could have led to these mistakes. Wrap the reason in {start} and {end}."
)
EDIT_REQUEST = (
    "I am writing the system prompt of an assistant that reads each user request and calls one of these tools, "
    "or none when no tool fits: {tools}.\n\nThe instructions of my current prompt are:\n\"{prompt}\"\n\n{fixed}"
    "With it, the assistant gets these requests wrong:\n{errors}\n\n"
    "The reason is: {gradient}\n\n"
    "Based on this, write improved instructions that fix these mistakes.{names} Wrap them in {start} and {end}."
)
PARAPHRASE_REQUEST = (
    "Write a variation of the following instructions that keeps their meaning.{names}\n\n"
    "Instructions:\n{prompt}\n\nWrap the variation in {start} and {end}."
)
NAMES = " Keep every tool name."
"""Asked for only where the prompt has no tool list among its fixed parts (which keeps the names by itself)."""


def between_tags(text: str) -> list[str]:
    """The pieces of `text` between <START> and <END> (an unterminated last piece counts); none: the text."""
    return tagged_pieces(text, (START, END))


def render_errors(cases: Sequence[Case], results: dict[int, CaseResult]) -> str:
    """Failures as the optimizer model reads them: conversation, what was chosen, what was right."""
    blocks = []
    for case in cases:
        blocks.append(f"{case.transcript()}\nchosen: {results[case.id].output.name}; right: {case.expected.name}")
    return "\n\n".join(blocks)


class ApoStrategy(StrategyBase):
    """ProTeGi's expansion and bandit selection (see the module docstring)."""

    name = "apo"
    default_steps = 6
    options = (
        Option("beam_width", int, 4, "prompts kept per round", minimum=1),
        Option("minibatch", int, 64, "training cases each beam prompt is scored on to find its failures", minimum=1),
        Option("gradients", int, 4, "textual gradients per beam prompt", minimum=1),
        Option("error_sample", int, 4, "failures shown to each gradient call", minimum=1),
        Option("paraphrases", int, 2, "Monte-Carlo paraphrases per edit", minimum=0),
        Option("max_successors", int, 8, "successors kept per parent", minimum=1),
        Option("bandit", str, "ucb", "best-arm algorithm choosing the next beam", choices=tuple(ALGORITHMS)),
        Option("exploration", float, 2.0, "UCB exploration constant c", minimum=0),
        Option("eval_budget", int, 64, "bandit pulls per round", minimum=1),
        Option("pull_size", int, 32, "training cases one pull scores", minimum=1),
        Option("temperature", float, 0.0, "sampling temperature of gradients and edits", minimum=0),
        Option("reply_tokens", int, 1024, "longest reply the optimizer model may write", minimum=1),
    )
    beam_width: int
    minibatch: int
    gradients: int
    error_sample: int
    paraphrases: int
    max_successors: int
    bandit: str
    exploration: float
    eval_budget: int
    pull_size: int
    temperature: float
    reply_tokens: int

    def __init__(self, **given) -> None:
        super().__init__(**given)
        if self.eval_budget < self.beam_width * (self.max_successors + 1):
            raise OptionError(f"an evaluation budget of {self.eval_budget} pulls cannot pull each of up to "
                              f"{self.beam_width * (self.max_successors + 1)} arms (beam width x (successors + 1)) "
                              "once")
        self.beam: list[Candidate] = []

    def expected_calls(self, size: SearchSize) -> int:
        """Per round: each beam member on its minibatch, and the bandit's pulls (an upper bound)."""
        return size.steps * (self.beam_width * min(self.minibatch, size.train) + self.eval_budget * self.pull_size)

    def expected_optimizer_work(self, size: SearchSize) -> OptimizerWork:
        """Per round and beam prompt: its gradients, an edit per gradient, and the edits' paraphrases."""
        return OptimizerWork(size.steps * self.beam_width * self.gradients * (2 + self.paraphrases),
                             self.reply_tokens)

    def propose(self, context: SearchContext, step: int) -> list[Proposal]:
        if not self.beam:
            self.beam = [context.incumbent]
        successors: list[Candidate] = []
        counts = {"parents": len(self.beam), "gradients": 0, "edits": 0, "paraphrases": 0}
        seen = {normalized(c.prompt) for c in self.beam}
        tally = Tally()
        for parent in self.beam:
            expanded = self._expand(context, parent, step, counts)[: self.max_successors]
            successors += context.admit(expanded, step, seen, tally)
        counts.update(invalid=tally.invalid, duplicates=tally.duplicates, successors=len(successors))
        arms = [*self.beam, *successors]
        results: list[dict[int, CaseResult]] = [{} for _ in arms]
        pools = [list(context.rng.permutation(len(context.train))) for _ in arms]

        def pull(arm: int) -> float:
            if len(pools[arm]) < self.pull_size:
                left = set(pools[arm])
                pools[arm].extend(i for i in context.rng.permutation(len(context.train)) if i not in left)
            batch = [context.train[int(i)] for i in pools[arm][: self.pull_size]]
            del pools[arm][: self.pull_size]
            scored = context.score(arms[arm].id, arms[arm].prompt, batch, label=f"step {step} apo pull")
            results[arm].update(scored)
            return float(np.mean([scored[c.id].passed for c in batch]))

        selection = select_arms(self.bandit, pull, len(arms), self.eval_budget, min(self.beam_width, len(arms)),
                                self.exploration)
        self.beam = [arms[i] for i in selection.chosen]
        context.notes["apo"] = counts
        context.notes["bandit"] = {"algorithm": self.bandit, "pulls": selection.pulls.tolist(),
                                   "means": [round(float(m), 4) for m in selection.means],
                                   "arms": [a.id for a in arms], "beam": [a.id for a in self.beam]}
        context.notes["summary"] = (
            f"apo: {counts['parents']} parent(s), {counts['gradients']} gradients, {counts['edits']} edits, "
            f"{counts['paraphrases']} paraphrases; {counts['successors']} successors kept, {counts['invalid']} "
            f"invalid, {counts['duplicates']} duplicates; {self.bandit} spent {selection.spent} pulls")
        return [Proposal(arms[i], results[i]) for i in selection.chosen if arms[i].id != context.incumbent.id]

    def _expand(self, context: SearchContext, parent: Candidate, step: int, counts: dict[str, int]) -> list[Candidate]:
        """Gradients from the parent's failures, an edit per gradient, paraphrases per edit."""
        order = context.rng.permutation(len(context.train))[: self.minibatch]
        minibatch = [context.train[int(i)] for i in order]
        scored = context.score(parent.id, parent.prompt, minibatch, label=f"step {step} apo minibatch")
        failures = [c for c in minibatch if not scored[c.id].passed]
        if not failures:
            return []
        tools = ", ".join(context.tool_names)
        parts = context.parts(parent.prompt)
        note = parts.note()
        shown = {"tools": tools, "prompt": parts.editable, "fixed": f"{note}\n\n" if note else "",
                 "start": START, "end": END}
        names = "" if parts.has_tool_list else NAMES
        samples = []
        for _ in range(self.gradients):
            picks = context.rng.choice(len(failures), size=min(self.error_sample, len(failures)), replace=False)
            samples.append([failures[int(i)] for i in picks])
        replies = context.ask_optimizer(
            [[{"role": "user", "content": GRADIENT_REQUEST.format(errors=render_errors(errors, scored), **shown)}]
             for errors in samples], self.temperature, self.reply_tokens)
        gradients = [(errors, (between_tags(r.text) or [""])[0]) for errors, r in zip(samples, replies) if not r.error]
        gradients = [(errors, g) for errors, g in gradients if g]
        counts["gradients"] += len(gradients)
        if not gradients:
            return []
        edits = context.ask_optimizer(
            [[{"role": "user", "content": EDIT_REQUEST.format(
                errors=render_errors(errors, scored), gradient=gradient, names=names, **shown)}]
             for errors, gradient in gradients],
            self.temperature, self.reply_tokens)
        lineage = {"parent": parent.id, "step": step}
        successors = []
        for (errors, gradient), reply in zip(gradients, edits):
            if reply.error or not between_tags(reply.text):
                continue
            details = {**lineage, "gradient": gradient, "error_case_ids": [c.id for c in errors],
                       "kind": "edit"}
            successors.append(Candidate(prompt=parts.splice(between_tags(reply.text)[0]), operator="apo-edit",
                                        parent_ids=[parent.id] if parent.id is not None else [],
                                        rationale=gradient, details=details))
        counts["edits"] += len(successors)
        if self.paraphrases and successors:
            requests = [[{"role": "user", "content": PARAPHRASE_REQUEST.format(
                names=names, prompt=context.parts(edit.prompt).editable, start=START, end=END)}]
                for edit in successors for _ in range(self.paraphrases)]
            replies = context.ask_optimizer(requests, max(self.temperature, 0.7), self.reply_tokens)
            edits_list = [edit for edit in successors for _ in range(self.paraphrases)]
            for edit, reply in zip(edits_list, replies):
                if reply.error or not between_tags(reply.text):
                    continue
                counts["paraphrases"] += 1
                successors.append(Candidate(
                    prompt=parts.splice(between_tags(reply.text)[0]), operator="apo-paraphrase",
                    parent_ids=list(edit.parent_ids),
                    rationale=edit.rationale, details={**edit.details, "kind": "paraphrase"}))
        if len(successors) > self.max_successors:
            keep = sorted(context.rng.choice(len(successors), size=self.max_successors, replace=False))
            successors = [successors[int(i)] for i in keep]
        return successors
