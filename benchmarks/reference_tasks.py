"""Tool-routing tasks built from the public reference data in `../shared/data/` (BFCL v4, CLINC150, SGD).

Each loader returns a `ReferenceTask`: tools in OpenAI function schema, a plain seed system prompt and ordinary
promptopt case records, which `write` turns into the three files `promptopt run` takes. The data is read where
it lies and never copied into the repository; a loader raises `DataMissing` (with the path it looked for) when
the data is absent, so callers can skip cleanly.
"""
from __future__ import annotations

import json
import os
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DATA_ROOT = Path(os.environ.get("PROMPTOPT_REFERENCE_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CLINC_DESCRIPTIONS = Path(__file__).with_name("clinc_intent_descriptions.json")


class DataMissing(RuntimeError):
    """The reference data a loader needs is not on this machine."""


@dataclass
class ReferenceTask:
    """A tool-routing task from reference data: tools, seed prompt and case records (promptopt's JSONL shape)."""

    name: str
    tools: list[dict[str, Any]]
    seed_prompt: str
    cases: list[dict[str, Any]]

    def write(self, folder: Path) -> tuple[Path, Path, Path]:
        """Write `cases.jsonl`, `tools.json` and `prompt.md` under `folder`; returns their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        cases, tools, prompt = folder / "cases.jsonl", folder / "tools.json", folder / "prompt.md"
        cases.write_text("".join(json.dumps(c, ensure_ascii=False) + "\n" for c in self.cases), encoding="utf-8")
        tools.write_text(json.dumps(self.tools, ensure_ascii=False, indent=1), encoding="utf-8")
        prompt.write_text(self.seed_prompt, encoding="utf-8")
        return cases, tools, prompt

    def tool_counts(self) -> Counter:
        return Counter(c["expected"]["tool"] or "none" for c in self.cases)


def seed_prompt_for(assistant: str, tools: list[dict[str, Any]]) -> str:
    """A plain seed prompt of the kind teams start from: who the assistant is, its tools, one routing rule."""
    names = ", ".join(t["function"]["name"] for t in tools)
    return (f"You are {assistant}. For each user message, call the one tool that handles it: {names}. "
            "If no tool fits, answer without calling a tool.\n")


def _require(path: Path) -> Path:
    if not path.exists():
        raise DataMissing(f"reference data not found: {path}")
    return path


def _function(name: str, description: str, properties: dict[str, Any] | None = None,
              required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "function", "function": {
        "name": name, "description": description,
        "parameters": {"type": "object", "properties": properties or {}, "required": required or []}}}


def balanced_sample(records: list[dict[str, Any]], limit: int, rng: random.Random) -> list[dict[str, Any]]:
    """Up to `limit` records, round-robin over expected tools so rare tools are kept."""
    by_tool: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_tool[record["expected"]["tool"] or "none"].append(record)
    for group in by_tool.values():
        rng.shuffle(group)
    picked: list[dict[str, Any]] = []
    while len(picked) < limit and any(by_tool.values()):
        for tool in sorted(by_tool):
            if by_tool[tool] and len(picked) < limit:
                picked.append(by_tool[tool].pop())
    rng.shuffle(picked)
    return picked


def _case(query: str, tool: str | None, source: str, context: list[dict[str, str]] | None = None,
          tags: list[str] | None = None) -> dict[str, Any]:
    return {"query": query, "context": context or [], "expected": {"tool": tool, "arguments": {}},
            "tags": tags or [], "source": source}


def load_clinc(domains: tuple[str, ...] = ("banking",), limit: int = 160, none_share: float = 0.25,
               seed: int = 0) -> ReferenceTask:
    """CLINC150: the intents of `domains` are the tools (with the project's fixed one-line descriptions); real
    out-of-scope queries and queries of two other domains are the "no tool" cases. Queries come from `val`."""
    folder = DATA_ROOT / "clinc150"
    data = json.loads(_require(folder / "data_train_val.json").read_text(encoding="utf-8"))
    all_domains = json.loads(_require(folder / "domains.json").read_text(encoding="utf-8"))
    descriptions = json.loads(CLINC_DESCRIPTIONS.read_text(encoding="utf-8"))
    unknown = [d for d in domains if d not in all_domains]
    if unknown:
        raise ValueError(f"unknown CLINC150 domain(s) {unknown}; known: {', '.join(all_domains)}")
    intents = [intent for domain in domains for intent in all_domains[domain]]
    missing = [i for i in intents if i not in descriptions]
    if missing:
        raise ValueError(f"no fixed description for CLINC150 intent(s) {missing} in {CLINC_DESCRIPTIONS.name}")
    tools = [_function(intent, descriptions[intent]) for intent in intents]
    rng = random.Random(seed)
    in_scope = [_case(text, intent, "clinc150/val") for text, intent in data["val"] if intent in intents]
    others = [d for d in all_domains if d not in domains and d not in ("small_talk", "meta")][:2]
    other_intents = {i for d in others for i in all_domains[d]}
    outside = [_case(text, None, "clinc150/oos_val", tags=["oos"]) for text, _ in data["oos_val"]]
    outside += [_case(text, None, "clinc150/val", tags=["other-domain"])
                for text, intent in data["val"] if intent in other_intents]
    n_none = int(limit * none_share)
    rng.shuffle(outside)
    cases = balanced_sample(in_scope, limit - n_none, rng) + outside[:n_none]
    rng.shuffle(cases)
    return ReferenceTask(f"clinc150-{'+'.join(domains)}", tools,
                         seed_prompt_for(f"the assistant of a bank's app ({', '.join(domains)})", tools), cases)


def _bfcl_rows(name: str) -> list[dict[str, Any]]:
    path = _require(DATA_ROOT / "bfcl_v4" / "data" / name)
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _openai_name(name: str) -> str:
    """BFCL names such as `weather_forecast.get` as OpenAI function names (dots are not allowed there)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _bfcl_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """BFCL's JSON-schema-ish parameters ("dict", "float", "tuple", "any") as JSON schema."""
    types = {"dict": "object", "float": "number", "tuple": "array", "any": "string"}
    out = {k: v for k, v in schema.items() if k not in ("type", "properties", "items")}
    if "type" in schema:
        out["type"] = types.get(schema["type"], schema["type"])
    if "properties" in schema:
        out["properties"] = {k: _bfcl_parameters(v) for k, v in schema["properties"].items()}
    if "items" in schema:
        out["items"] = _bfcl_parameters(schema["items"])
    return out


def load_bfcl(groups: int = 10, min_group: int = 10, limit: int = 160, seed: int = 0) -> ReferenceTask:
    """BFCL v4 live: the `groups` largest fixed tool sets of `live_multiple` (rows sharing one tool list), their
    tools merged; every row of those groups is a case (expected = the ground-truth function), and the
    `live_irrelevance` rows over the same tool lists are "no tool" cases. Context = earlier turns."""
    rows = _bfcl_rows("BFCL_v4_live_multiple.json")
    answers = {r["id"]: r["ground_truth"] for r in _bfcl_rows("possible_answer/BFCL_v4_live_multiple.json")}
    irrelevant = _bfcl_rows("BFCL_v4_live_irrelevance.json")

    def key(row: dict[str, Any]) -> tuple[str, ...]:
        return tuple(sorted(f["name"] for f in row["function"]))

    sizes = Counter(key(r) for r in rows if len(answers.get(r["id"], [])) == 1)
    chosen = [k for k, n in sizes.most_common() if n >= min_group][:groups]
    if not chosen:
        raise ValueError(f"no BFCL tool group with at least {min_group} rows")
    functions: dict[str, dict[str, Any]] = {}
    records = []
    for row in rows + irrelevant:
        if key(row) not in chosen:
            continue
        for function in row["function"]:
            functions.setdefault(function["name"], function)
        messages = [m for turn in row["question"] for m in turn if m.get("role") in ("user", "assistant")]
        if not messages or messages[-1]["role"] != "user":
            continue
        truth = answers.get(row["id"])
        if truth is not None and len(truth) != 1:
            continue
        tool = _openai_name(next(iter(truth[0]))) if truth else None
        context = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
        records.append(_case(messages[-1]["content"], tool, f"bfcl_v4/{row['id']}", context,
                             ["irrelevance"] if truth is None else []))
    tools = [{"type": "function", "function": {
        "name": _openai_name(f["name"]), "description": f.get("description", ""),
        "parameters": _bfcl_parameters(f.get("parameters") or {"type": "dict", "properties": {}})}}
        for f in functions.values()]
    cases = balanced_sample(records, limit, random.Random(seed))
    return ReferenceTask("bfcl-live", tools, seed_prompt_for("a helpful assistant with tools", tools), cases)


def load_sgd(services: tuple[str, ...] = ("Restaurants_2", "Hotels_1", "RentalCars_1", "Weather_1",
                                          "RideSharing_1", "Music_1"),
             limit: int = 160, max_context: int = 4, seed: int = 0) -> ReferenceTask:
    """SGD dev: the intents of `services` are the tools (`Service_Intent`, with the schema's descriptions and
    slots as parameters). Every user turn of the single-service dialogues of those services is a case: the
    turn's `active_intent` is the expected tool (`NONE`: no tool), the turns before it are the context."""
    folder = DATA_ROOT / "sgd" / "dev"
    schema = {s["service_name"]: s for s in json.loads(_require(folder / "schema.json").read_text(encoding="utf-8"))}
    unknown = [s for s in services if s not in schema]
    if unknown:
        raise ValueError(f"unknown SGD dev service(s) {unknown}; known: {', '.join(schema)}")
    tools = []
    for service in services:
        slots = {s["name"]: s for s in schema[service]["slots"]}
        for intent in schema[service]["intents"]:
            names = [*intent["required_slots"], *intent["optional_slots"]]
            properties = {n: {"type": "string", "description": slots[n]["description"]} for n in names}
            tools.append(_function(f"{service}_{intent['name']}", intent["description"], properties,
                                   list(intent["required_slots"])))
    records = []
    for path in sorted(folder.glob("dialogues_*.json")):
        for dialogue in json.loads(path.read_text(encoding="utf-8")):
            if len(dialogue["services"]) != 1 or dialogue["services"][0] not in services:
                continue
            history: list[dict[str, str]] = []
            for turn in dialogue["turns"]:
                role = "user" if turn["speaker"] == "USER" else "assistant"
                if role == "user":
                    frame = turn["frames"][0]
                    intent = frame["state"]["active_intent"]
                    tool = None if intent == "NONE" else f"{frame['service']}_{intent}"
                    records.append(_case(turn["utterance"], tool, f"sgd/dev/{dialogue['dialogue_id']}",
                                         history[-max_context:], ["multi-turn"] if history else []))
                history.append({"role": role, "content": turn["utterance"]})
    cases = balanced_sample(records, limit, random.Random(seed))
    return ReferenceTask("sgd-dev", tools, seed_prompt_for("a travel and services assistant", tools), cases)


LOADERS = {"clinc150": load_clinc, "bfcl": load_bfcl, "sgd": load_sgd}
