"""OPRO (Yang et al. 2023, "Large Language Models as Optimizers"): the optimizer model is shown the best system
prompts so far with their scores and asked for a new one.

Each step builds one meta-prompt: a task description (the assistant and its tools), up to `history` of the
best (prompt, score) pairs so far sorted ascending so the best comes last, with scores as integers 0-100; a
few exemplar training cases (conversation and expected tool), preferring ones the current best prompt gets
wrong; and the instruction to write a prompt different from and better than all of them. Prompts are shown and
written as their editable text only (`PromptParts`): the meta-prompt says what the fixed parts (tool list,
protected regions, examples) hold without repeating the protected text, and each reply, cut out of its
<PROMPT></PROMPT> tags, is spliced back into the incumbent's fixed parts. The optimizer model samples
`candidates` replies at `temperature`. Duplicates of each other or of the history, and invalid prompts (a tool
dropped, too long), are dropped before any evaluation. The rest are scored on one fixed
training subset through the shared scorer, join the history, and the best of the step goes to acceptance.
Defaults follow the paper's code: 8 samples per step at temperature 1.0, 20 prompts in the history, 3
exemplars. The meta-prompt of every step is stored with the step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from promptopt.case import Case
from promptopt.chat_messages import message_text
from promptopt.optimizer.candidates import Candidate
from promptopt.optimizer.options import Option
from promptopt.optimizer.prompt_text import PROMPT_TAGS, first_tagged, normalized
from promptopt.optimizer.scorer import accuracy
from promptopt.optimizer.splits import stratified_sample
from promptopt.optimizer.strategy import OptimizerWork, Proposal, SearchContext, SearchSize, StrategyBase

TAG_OPEN, TAG_CLOSE = PROMPT_TAGS

META_TEXT = {
    "en": {
        "intro": ("Your task is to write the instructions {open}{close} of the system prompt of an assistant that "
                  "reads each user request and calls exactly one of these tools, or none when no tool fits:\n"
                  "{tools}\n\nBelow are earlier instructions with their scores. A score is the share of training "
                  "requests routed to the right tool, from 0 to 100; higher is better."),
        "pair": "text:\n{prompt}\nscore:\n{score}",
        "examples": "Below are example requests and the tool each one should go to.",
        "context": "Earlier conversation:\n{context}",
        "request": "Request: {query}\nRight tool: {tool}",
        "ask": ("Write new instructions that are different from all of the above and score higher than all of "
                "them.{names} Start them with {open} and end them with {close}."),
        "names": " They must name every tool.",
    },
    "zh": {
        "intro": ("你的任务是为一个助手编写系统提示词中的指令部分 {open}{close}。助手读取每条用户请求，并调用以下工具中的"
                  "恰好一个；若没有合适的工具则选择 none：\n{tools}\n\n"
                  "下面是之前的指令及其得分。得分是训练请求中被路由到正确工具的比例，范围 0 到 100，越高越好。"),
        "pair": "提示词：\n{prompt}\n得分：\n{score}",
        "examples": "下面是一些示例请求，以及每条请求应当调用的工具。",
        "context": "之前的对话：\n{context}",
        "request": "请求：{query}\n正确工具：{tool}",
        "ask": "请写新的指令：它要与上面所有指令都不同，并且得分比它们都高。{names}以 {open} 开头，以 {close} 结尾。",
        "names": "它必须提到每一个工具。",
    },
}


@dataclass
class Scored:
    """A prompt of the history with its training-subset accuracy."""

    prompt: str
    score: float
    candidate_id: int | None


class OproStrategy(StrategyBase):
    """OPRO over system prompts (see the module docstring)."""

    name = "opro"
    options = (
        Option("candidates", int, 8, "samples from the optimizer model per step", minimum=1),
        Option("history", int, 20, "best earlier prompts shown in the meta-prompt", minimum=1),
        Option("exemplars", int, 3, "training cases shown in the meta-prompt", minimum=0),
        Option("temperature", float, 1.0, "sampling temperature of the optimizer model", minimum=0),
        Option("train_sample", int, 48, "training cases every sample is scored on", minimum=1),
        Option("reply_tokens", int, 1024, "longest reply the optimizer model may write", minimum=1),
        Option("language", str, "en", "language of the meta-prompt", choices=tuple(META_TEXT)),
    )
    candidates: int
    history: int
    exemplars: int
    temperature: float
    train_sample: int
    reply_tokens: int
    language: str

    def __init__(self, **given) -> None:
        super().__init__(**given)
        self.scored: list[Scored] = []
        self._subset: list[Case] | None = None

    def expected_calls(self, size: SearchSize) -> int:
        """Per step: every sample scored on the training subset (the seed once)."""
        subset = min(self.train_sample, size.train)
        return subset + size.steps * self.candidates * subset

    def expected_optimizer_work(self, size: SearchSize) -> OptimizerWork:
        """Per step: one meta-prompt sampled `candidates` times."""
        return OptimizerWork(size.steps * self.candidates, self.reply_tokens)

    def propose(self, context: SearchContext, step: int) -> list[Proposal]:
        subset = self._training_subset(context)
        if not self.scored:
            seed_results = context.score(context.incumbent.id, context.incumbent.prompt, subset,
                                         label="opro history: incumbent")
            self.scored.append(Scored(context.incumbent.prompt, accuracy(seed_results), context.incumbent.id))
        meta_prompt = self.meta_prompt(context, subset)
        context.notes["meta_prompt"] = meta_prompt
        completions = context.ask_optimizer([[{"role": "user", "content": meta_prompt}]] * self.candidates,
                                            self.temperature, self.reply_tokens)
        parents = [s.candidate_id for s in self._top() if s.candidate_id is not None]

        parts = context.parts(context.incumbent.prompt)

        def build(index: int, reply: str) -> Candidate:
            return Candidate(prompt=parts.splice(first_tagged(reply)), operator="opro", parent_ids=parents,
                             rationale=f"OPRO step {step}, sample {index + 1} of {self.candidates}",
                             details={"sample": index, "raw_reply": reply[:4000]})

        proposals, tally = context.score_replies(
            completions, build, subset, step, lambda index: f"step {step} opro sample {index + 1}",
            seen={normalized(s.prompt) for s in self.scored})
        self.scored.extend(Scored(p.candidate.prompt, p.train_accuracy, p.candidate.id) for p in proposals)
        context.notes["samples"] = tally.to_json()
        context.notes["summary"] = (
            f"opro: {tally.samples} samples from the optimizer model: {tally.scored} scored, "
            f"{tally.duplicates} duplicates, {tally.invalid} invalid{tally.why()}, {tally.failed} failed calls")
        return sorted(proposals, key=lambda p: -p.train_accuracy)

    def meta_prompt(self, context: SearchContext, subset: Sequence[Case]) -> str:
        """The meta-prompt of this step (see the module docstring)."""
        text = META_TEXT[self.language]
        tools = "\n".join(f"- {name}" for name in [*context.tool_names, "none"])
        parts = [text["intro"].format(open=TAG_OPEN, close=TAG_CLOSE, tools=tools)]
        for scored in sorted(self._top(), key=lambda s: s.score):
            parts.append(text["pair"].format(prompt=context.parts(scored.prompt).editable,
                                             score=round(100 * scored.score)))
        examples = self._exemplars(context, subset)
        if examples:
            parts.append(text["examples"])
            for case in examples:
                lines = []
                if case.context:
                    history = "\n".join(f"{m['role']}: {message_text(m)}" for m in case.context)
                    lines.append(text["context"].format(context=history))
                lines.append(text["request"].format(query=case.query, tool=case.expected.name))
                parts.append("\n".join(lines))
        incumbent = context.parts(context.incumbent.prompt)
        note = incumbent.note(self.language)
        if note:
            parts.append(note)
        names = "" if incumbent.has_tool_list else text["names"]
        parts.append(text["ask"].format(open=TAG_OPEN, close=TAG_CLOSE, names=names))
        return "\n\n".join(parts)

    def _top(self) -> list[Scored]:
        """The best `history` prompts so far (ties keep the earlier one)."""
        ranked = sorted(range(len(self.scored)), key=lambda i: (-self.scored[i].score, i))
        return [self.scored[i] for i in ranked[: self.history]]

    def _exemplars(self, context: SearchContext, subset: Sequence[Case]) -> list[Case]:
        """Training cases to show, drawn fresh each step: failing ones of the best prompt first."""
        best = max(self.scored, key=lambda s: s.score)
        results = context.score(best.candidate_id or context.incumbent.id, best.prompt, subset,
                                label="opro exemplars") if best.candidate_id is not None else {}
        failing = [c for c in subset if c.id in results and not results[c.id].passed]
        passing = [c for c in subset if c not in failing]
        chosen: list[Case] = []
        for pool in (failing, passing):
            order = context.rng.permutation(len(pool))
            for i in order:
                if len(chosen) < self.exemplars:
                    chosen.append(pool[int(i)])
        return chosen

    def _training_subset(self, context: SearchContext) -> list[Case]:
        """One stratified training subset, fixed for the whole run so scores are comparable across steps."""
        if self._subset is None:
            self._subset = stratified_sample(context.train, self.train_sample, context.rng)
        return self._subset
