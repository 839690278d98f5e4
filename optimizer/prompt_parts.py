"""A system prompt cut into the text an optimizer may rewrite and the fixed parts it may not: protected regions,
the tool list (where the prompt has one) and the few-shot examples section. Every optimizer that writes prompt
text (OPRO, APO, BPO, the DSPy bridge) is shown the editable text and a note of what the fixed parts hold, and
its reply is spliced back, so protected regions stay byte-identical and no tool goes missing by construction,
and no reply pays for copying them again."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from promptopt.markup import MARKER, PROTECTED
from promptopt.optimizer.prompt_text import EXAMPLES_HEADER

EDITABLE, PROTECTED_PART, TOOL_LIST, EXAMPLES = "editable", "protected", "tools", "examples"
LIST_ITEM = re.compile(r"^\s*(?:[-*•·]|\d+[.)、])\s*\S")
"""A line of a bulleted or numbered list."""

NOTE_TEXT = {
    "en": {
        "lead": "The engine keeps these parts of the system prompt as they are and joins them to the text you "
                "write, so do not repeat them:",
        "tools": "The tool list:\n{text}",
        "protected": "A protected section of {lines} line(s) that no one may change (not shown here).",
        "examples": "A section of {count} worked example(s).",
    },
    "zh": {
        "lead": "系统提示词的以下部分由引擎原样保留，并与你写的文字拼接在一起，所以不要重复它们：",
        "tools": "工具列表：\n{text}",
        "protected": "一个共 {lines} 行、任何人都不能修改的受保护段落（此处不显示）。",
        "examples": "一个包含 {count} 个示例的段落。",
    },
}


@dataclass(frozen=True)
class Part:
    """One piece of a prompt, in order: its text (verbatim) and what it is (editable, protected, tools,
    examples)."""

    text: str
    kind: str


@dataclass(frozen=True)
class PromptParts:
    """A prompt as an ordered list of parts whose texts join to the prompt exactly; `editable` is what an
    optimizer is shown and may rewrite, `splice` puts a rewrite back among the fixed parts."""

    prompt: str
    parts: tuple[Part, ...]

    @classmethod
    def of(cls, prompt: str, tool_names: Sequence[str]) -> "PromptParts":
        """Cut `prompt`: protected regions first, then in the text between them an examples section (from its
        `## Examples` header to the end of that text) and tool lists (runs of list lines that name tools, with
        the line introducing them when it ends in a colon)."""
        parts: list[Part] = []
        position = 0
        for match in PROTECTED.finditer(prompt):
            parts += _cut_text(prompt[position:match.start()], tool_names)
            parts.append(Part(match.group(0), PROTECTED_PART))
            position = match.end()
        parts += _cut_text(prompt[position:], tool_names)
        return cls(prompt, tuple(p for p in parts if p.text))

    @property
    def editable(self) -> str:
        """The text an optimizer may rewrite: every editable piece, in order, a blank line between them."""
        return "\n\n".join(p.text.strip() for p in self.parts if p.kind == EDITABLE and p.text.strip())

    @property
    def fixed(self) -> list[Part]:
        """The parts no optimizer writes."""
        return [p for p in self.parts if p.kind != EDITABLE]

    def splice(self, rewrite: str) -> str:
        """The prompt with its editable text replaced by `rewrite`, in the place of the first editable piece (the
        others give way, leaving the line breaks between the fixed parts); the fixed parts stay where they were,
        byte for byte. The editable text itself, however spaced, gives back the prompt as it was. Fixed text the
        rewrite copied anyway (a protected region, a tool-list line, an examples section, a stray marker) is
        taken out of it first, so nothing appears twice. An empty rewrite gives an empty prompt (refused as
        such)."""
        text = self.clean(rewrite)
        if not text:
            return ""
        if " ".join(text.split()) == " ".join(self.editable.split()):
            return self.prompt
        first = next((i for i, p in enumerate(self.parts) if p.kind == EDITABLE and p.text.strip()), None)
        if first is None:
            return f"{text}\n\n{self.prompt}"
        pieces = []
        for index, part in enumerate(self.parts):
            if part.kind != EDITABLE:
                pieces.append(part.text)
            elif index == first:
                body = part.text.strip()
                start = part.text.index(body)
                pieces.append(part.text[:start] + text + part.text[start + len(body):])
            else:
                breaks = _line_breaks(part.text)
                pieces.append(breaks[1:] if pieces and pieces[-1].endswith("\n") else breaks)
        return "".join(pieces)

    def clean(self, rewrite: str) -> str:
        """`rewrite` without the fixed text it may have copied, or the lines of the note describing it (a small
        model echoes its whole request)."""
        text = PROTECTED.sub("", rewrite)
        text = MARKER.sub("", text)
        header = text.find(EXAMPLES_HEADER)
        if header >= 0 and any(p.kind == EXAMPLES for p in self.parts):
            text = text[:header]
        fixed_lines = {line.strip() for p in self.parts if p.kind == TOOL_LIST for line in p.text.splitlines()
                       if line.strip()}
        fixed_lines |= {line.strip() for language in NOTE_TEXT for line in self.note(language).splitlines()
                        if line.strip()}
        kept = [line for line in text.splitlines() if not _copied(line.strip(), fixed_lines)]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(kept)).strip()

    def note(self, language: str = "en") -> str:
        """What the fixed parts hold, for the optimizer model (the protected text itself is never shown); empty
        when the whole prompt is editable."""
        words = NOTE_TEXT.get(language, NOTE_TEXT["en"])
        lines = []
        for part in self.fixed:
            if part.kind == TOOL_LIST:
                lines.append(words["tools"].format(text=part.text.strip()))
            elif part.kind == PROTECTED_PART:
                content = [line for line in MARKER.sub("", part.text).splitlines() if line.strip()]
                lines.append(words["protected"].format(lines=len(content)))
            else:
                count = max(sum(line.startswith("User:") for line in part.text.splitlines()), 1)
                lines.append(words["examples"].format(count=count))
        return "\n\n".join([words["lead"], *lines]) if lines else ""

    @property
    def has_tool_list(self) -> bool:
        """Whether a tool list is among the fixed parts (then every tool the prompt names stays named)."""
        return any(p.kind == TOOL_LIST for p in self.parts)


def _cut_text(text: str, tool_names: Sequence[str]) -> list[Part]:
    """Unprotected text as editable pieces, tool lists and an examples section, their texts joining to `text`."""
    header = re.search(rf"^{re.escape(EXAMPLES_HEADER)}[ \t]*$", text, re.M)
    examples = [Part(text[header.start():], EXAMPLES)] if header else []
    if header:
        text = text[:header.start()]
    lines = text.splitlines(keepends=True)
    in_list = _tool_list_lines([line.rstrip("\r\n") for line in lines], tool_names)
    parts: list[Part] = []
    for index, line in enumerate(lines):
        kind = TOOL_LIST if index in in_list else EDITABLE
        if parts and parts[-1].kind == kind:
            parts[-1] = Part(parts[-1].text + line, kind)
        else:
            parts.append(Part(line, kind))
    return [*parts, *examples]


def _copied(line: str, fixed_lines: set[str]) -> bool:
    """Whether `line` is a fixed line, or the start of one where a reply was cut off at its token limit."""
    return line in fixed_lines or (len(line) >= 8 and any(fixed.startswith(line) for fixed in fixed_lines))


def _line_breaks(text: str) -> str:
    """What an editable piece that gives way leaves between its neighbours: a blank line, a line break or
    nothing, as it had."""
    return "\n\n" if "\n\n" in text else "\n" if "\n" in text else ""


def _tool_list_lines(lines: list[str], tool_names: Sequence[str]) -> set[int]:
    """Indices of the lines that make up tool lists: runs of list lines each naming a tool, at least two lines
    (or one naming two tools), with the line just before the run when it ends in a colon."""
    if not tool_names:
        return set()
    names = re.compile(r"(?<![\w-])(?:" + "|".join(re.escape(n) for n in sorted(tool_names, key=len, reverse=True))
                       + r")(?![\w-])")
    chosen: set[int] = set()
    index = 0
    while index < len(lines):
        end = index
        while end < len(lines) and LIST_ITEM.match(lines[end]) and names.search(lines[end]):
            end += 1
        run = range(index, end)
        if len(run) >= 2 or (len(run) == 1 and len(set(names.findall(lines[index]))) >= 2):
            chosen.update(run)
            if index > 0 and lines[index - 1].rstrip().endswith((":", "：")):
                chosen.add(index - 1)
        index = max(end, index + 1)
    return chosen
