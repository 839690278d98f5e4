"""Optimizers write only what they may change: a prompt cut into editable text and fixed parts (protected regions,
the tool list, the examples section), and OPRO, APO and BPO runs whose optimizer endpoint (a strict local OpenAI
server, through the real `openai` client) answers a short instruction text only, never the protected text or
a tool name: every candidate is valid, scored, and keeps the seed's protected region byte for byte."""
from __future__ import annotations

import pytest

from promptopt.api import optimize
from promptopt.chat_request import ChatRequestError
from promptopt.markup import protected_regions
from promptopt.optimizer.prompt_parts import EDITABLE, EXAMPLES, PROTECTED_PART, TOOL_LIST, PromptParts
from promptopt.optimizer.prompt_text import render_demos
from promptopt.optimizer.strategies.bpo.pairs import REWRITER_SYSTEM
from promptopt.runs.case_import import read_cases
from promptopt.runs.store import Store
from promptopt.server import ChatServer
from promptopt.tasks import bundled_task
from tests.fakes import ExamplesRouter
from tests.scripted_runs import scripted_task

TASK = bundled_task("tool-routing")
NAMES = [tool["function"]["name"] for tool in TASK.tools]
COMPLIANCE = "Compliance: never give medical, legal or financial advice"


def test_the_bundled_seed_is_cut_into_instructions_tool_list_and_protected_region():
    parts = PromptParts.of(TASK.seed_prompt, NAMES)
    assert "".join(p.text for p in parts.parts) == TASK.seed_prompt
    assert [p.kind for p in parts.parts if p.text.strip()] == [EDITABLE, TOOL_LIST, EDITABLE, PROTECTED_PART]
    assert parts.editable.startswith("You are Xiaoxian") and "look it up" in parts.editable
    assert "- Stores: find_stores" not in parts.editable and COMPLIANCE not in parts.editable
    note = parts.note()
    assert "- Stores: find_stores" in note and COMPLIANCE not in note and "protected section of 1 line(s)" in note
    assert parts.splice(parts.editable) == TASK.seed_prompt
    assert parts.splice("  " + parts.editable.replace("\n\n", "\n") + "\n") == TASK.seed_prompt


def test_a_rewrite_is_spliced_back_and_what_it_copied_is_not_doubled():
    parts = PromptParts.of(TASK.seed_prompt, NAMES)
    spliced = parts.splice("Call a tool whenever the request needs data.")
    assert spliced.startswith("Call a tool whenever the request needs data.\n\nYou can use tools")
    assert protected_regions(spliced) == protected_regions(TASK.seed_prompt) and spliced.endswith("-->\n")
    assert all(name in spliced for name in NAMES) and "\n\n\n" not in spliced
    copied = parts.splice(f"Be brief.\n- Stores: find_stores\n{protected_regions(TASK.seed_prompt)[0]}\n")
    assert copied.count("- Stores: find_stores") == 1 and copied.count(COMPLIANCE) == 1
    echoed = parts.splice(f"{parts.editable}\n\n{parts.note()}")  # a small model echoing its whole request
    assert echoed == TASK.seed_prompt
    assert parts.splice(f"{parts.editable}\n\n{parts.note()[:-40]}") == TASK.seed_prompt  # an echo cut short
    assert parts.splice("<!-- protected -->\n<!-- /protected -->") == ""  # nothing of its own: refused as empty


def test_numbered_chinese_tool_lists_and_examples_sections_are_fixed():
    prompt = ("你是购物助手。\n可用工具：\n1. get_order_status 查询订单\n2. find_stores 查找门店\n请简短回答。")
    parts = PromptParts.of(prompt, ["get_order_status", "find_stores"])
    assert parts.editable == "你是购物助手。\n\n请简短回答。"
    spliced = parts.splice("先确认用户要什么，再调用工具。")
    assert spliced == "先确认用户要什么，再调用工具。\n可用工具：\n1. get_order_status 查询订单\n2. find_stores 查找门店\n"
    assert "工具列表" in parts.note("zh")

    demos = read_cases(TASK.case_files[0], TASK.tools)[:3]
    with_demos = render_demos(TASK.seed_prompt, demos)
    cut = PromptParts.of(with_demos, NAMES)
    assert cut.parts[-1].kind == EXAMPLES and "## Examples" not in cut.editable
    assert "3 worked example(s)" in cut.note()
    assert cut.splice("Be brief.").endswith(cut.parts[-1].text)


def test_a_prompt_without_fixed_parts_is_all_editable():
    parts = PromptParts.of("Route each request to get_order_status when it is about an order.", NAMES)
    assert parts.editable == parts.prompt and parts.note() == "" and not parts.has_tool_list
    assert parts.splice("Use get_order_status for orders.") == "Use get_order_status for orders."


class InstructionWriter:
    """A scripted optimizer endpoint that answers with a short instruction text only, in the tags each request
    asks for: never a protected section, never a tool name. Records every request it gets."""

    model_name = "scripted-optimizer"

    def __init__(self) -> None:
        self.requests: list[dict] = []

    def respond(self, request: dict) -> tuple[dict, int, int]:
        self.requests.append(request)
        text = "\n".join(str(m.get("content")) for m in request["messages"])
        rule = f"Call the tool the request needs; check twice ({len(self.requests)})."
        if "Give one reason" in text:
            reply = "<START>The prompt never says when a tool is needed.<END>"
        elif "<START>" in text:
            reply = f"<START>{rule}<END>"
        elif request["messages"][0].get("content") == REWRITER_SYSTEM:
            reply = rule
        else:
            reply = f"Step 1: the prompt is vague.\n<PROMPT>{rule}</PROMPT>"
        return {"role": "assistant", "content": reply}, 200, 12


RUNS = {
    "opro": (dict(candidates=2, train_sample=8), "opro"),
    "apo": (dict(beam_width=1, minibatch=8, gradients=1, error_sample=2, paraphrases=1, max_successors=2,
                 eval_budget=3, pull_size=4), "apo-"),
    "bpo": (dict(feedback_groups=1, group_size=2), "bpo-"),
}


@pytest.mark.parametrize("strategy", list(RUNS))
def test_short_instruction_replies_become_valid_scored_candidates(tmp_path, strategy):
    options, operator = RUNS[strategy]
    case_file, expected = scripted_task(tmp_path, every=8)
    writer = InstructionWriter()
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with ChatServer(ExamplesRouter(expected)) as task_server, ChatServer(writer) as optimizer_server:
        result = optimize(cases=[case_file], strategy=strategy, steps=1, db=db, model="scripted",
                          base_url=task_server.base_url, optimizer_model="scripted-optimizer",
                          optimizer_base_url=optimizer_server.base_url, **options)
    assert result.report["status"] == "finished" and result.report["failed_calls"] == 0
    assert writer.requests
    for request in writer.requests:
        shown = "\n".join(str(m.get("content")) for m in request["messages"])
        assert COMPLIANCE not in shown and "protected -->" not in shown
    store = Store(db)
    proposed = [c for c in store.candidates(result.run_id) if c.operator.startswith(operator)]
    assert proposed
    seed_regions = protected_regions(result.seed_prompt)
    for candidate in proposed:
        assert candidate.status != "invalid", candidate.rejection
        assert store.evaluations(candidate.id), f"candidate {candidate.id} was never scored"
        assert protected_regions(candidate.prompt) == seed_regions
        assert all(name in candidate.prompt for name in NAMES)
        assert candidate.prompt.startswith("Call the tool the request needs; check twice")


class InstructionWriterWithoutN(InstructionWriter):
    """The same writer behind an endpoint that takes no `n`: several choices per call are OpenAI's 400."""

    def __init__(self) -> None:
        super().__init__()
        self.n_asked: list[int | None] = []

    def respond(self, request: dict) -> tuple[dict, int, int]:
        self.n_asked.append(request.get("n"))
        if int(request.get("n") or 1) > 1:
            raise ChatRequestError(400, "n: only 1 choice is supported by this endpoint", param="n",
                                   code="invalid_value")
        return super().respond(request)


def test_an_optimizer_endpoint_without_n_is_asked_once_per_sample_and_the_run_says_so(tmp_path):
    case_file, expected = scripted_task(tmp_path, every=8)
    writer, said = InstructionWriterWithoutN(), []
    db = f"sqlite:///{tmp_path / 'store.db'}"
    with ChatServer(ExamplesRouter(expected)) as task_server, ChatServer(writer) as optimizer_server:
        result = optimize(cases=[case_file], strategy="opro", steps=1, db=db, model="scripted",
                          base_url=task_server.base_url, optimizer_model="scripted-optimizer",
                          optimizer_base_url=optimizer_server.base_url, candidates=3, train_sample=8,
                          progress=said.append)
    assert writer.n_asked == [3, None, None, None]  # refused once, then one call each
    (step,) = [s for s in Store(db).steps(result.run_id) if s.step == 1]
    assert len(step.details["notices"]) == 1 and "takes no n" in step.details["notices"][0]
    assert sum("takes no n" in line for line in said) == 1
    assert step.details["samples"]["samples"] == 3 and step.details["samples"]["failed"] == 0
