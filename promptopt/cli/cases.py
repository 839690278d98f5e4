"""`promptopt cases import|label|list|show|export|delete`: case files and production logs into the store, what is
there, and back out."""
from __future__ import annotations

import json
import logging
import sys

import click

from promptopt.case import LABELS, NO_TOOL
from promptopt.case_selection import CaseSelection
from promptopt.chat_messages import message_text
from promptopt.cli.shared import db_option, progress_options, user_errors
from promptopt.runs.case_export import EXPORT_FORMATS, case_record, export_format, write_cases, write_cases_to
from promptopt.runs.log_import import FORMATS as LOG_FORMATS
from promptopt.runs.log_import import Label, Turn, read_labels, read_source, write_label_template
from promptopt.runs.store import Store
from promptopt.strict_json import loads
from promptopt.tasks import TASKS, bundled_task, load_tools

LOGGER = logging.getLogger(__name__)


@click.group()
def cases() -> None:
    """Import and inspect stored cases."""


@cases.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--task", type=click.Choice(sorted(TASKS)), default="tool-routing", show_default=True)
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False),
              help="Tools the cases are validated against. Default: the task's bundled tools.")
@click.option("--format", "fmt", type=click.Choice(LOG_FORMATS), default="auto", show_default=True,
              help="cases: case files; openai: chat-completions logs; sharegpt: ShareGPT conversations; "
                   "auto: from the first record's keys.")
@click.option("--labels", "labels_file", type=click.Path(dir_okay=False),
              help="Labels CSV (record, turn, expected_tool, expected_arguments) for a log's turns; one FILE only.")
@click.option("--write-labels", "template", type=click.Path(dir_okay=False),
              help="Write the log's turns that need a label to this CSV, to fill in; one FILE only.")
@db_option
@progress_options
def import_cases(files, task, tools_file, fmt, labels_file, template, db, progress) -> None:
    """Validate FILES (.jsonl or .csv case files, or production logs) and import them, all or nothing;
    re-imports are deduplicated. A log's turns without an expected output are listed, not imported."""
    from promptopt.api import import_parsed

    if (labels_file or template) and len(files) > 1:
        raise click.UsageError("--labels and --write-labels take one log FILE (their record numbers are its lines)")
    store = Store(db)
    with user_errors():
        tools = load_tools(tools_file) if tools_file else bundled_task(task).tools
        labels = read_labels(labels_file) if labels_file else None
        parsed = []
        for path in files:
            parsed.append(read_source(path, tools, fmt, labels))
            LOGGER.debug("read %s: %d cases, %d unlabelled turns", path, len(parsed[-1].cases),
                         len(parsed[-1].unlabelled))
        stored = import_parsed(store, parsed)
    click.echo(f"{stored.distinct} cases in {len(files)} file(s): {stored.new} new, {stored.existing} already stored")
    turns = [turn for file in parsed for turn in file.unlabelled]
    if template:
        write_label_template(template, turns)
        progress(f"wrote {template} ({len(turns)} turns to label)")
    _report_unlabelled(files, turns, template)


def _report_unlabelled(files, turns, template) -> None:
    """Say how many log turns still need a label and how to add them."""
    if turns:
        target = files[0] if len(files) == 1 else "FILE"
        count = "1 turn needs" if len(turns) == 1 else f"{len(turns)} turns need"
        click.echo(f"{count} a label: promptopt cases label {target} --labels {template or 'labels.csv'}")


@cases.command("label")
@click.argument("log_file", type=click.Path(dir_okay=False))
@click.option("--labels", "--from", "labels_file", type=click.Path(dir_okay=False),
              help="Labels CSV to apply (as `cases import --labels`); turns it leaves are asked for.")
@click.option("--format", "fmt", type=click.Choice(("auto", "openai", "sharegpt")), default="auto",
              show_default=True)
@click.option("--task", type=click.Choice(sorted(TASKS)), default="tool-routing", show_default=True)
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False),
              help="Tools the answers are checked against. Default: the task's bundled tools.")
@click.option("--no-input", is_flag=True, help="Ask nothing: import only what the log and --labels label.")
@db_option
def label_cases(log_file, labels_file, fmt, task, tools_file, no_input, db) -> None:
    """Label LOG_FILE's unlabelled turns (from --labels, else one question per turn; empty answer skips) and
    import every labelled turn, all or nothing."""
    from promptopt.api import import_parsed

    store = Store(db)
    with user_errors():
        tools = load_tools(tools_file) if tools_file else bundled_task(task).tools
        labels = dict(read_labels(labels_file)) if labels_file else {}
        parsed = read_source(log_file, tools, fmt, labels)
        if not no_input:
            labels.update(ask_labels(parsed.unlabelled, tools))
            parsed = read_source(log_file, tools, fmt, labels)
        stored = import_parsed(store, [parsed])
    click.echo(f"{stored.distinct} cases from {log_file}: {stored.new} new, {stored.existing} already stored")
    _report_unlabelled([log_file], parsed.unlabelled, None)


def ask_labels(turns: list[Turn], tools: list[dict]) -> dict[tuple[int, int], Label]:
    """Ask for each turn's expected tool and arguments, showing its context, query and production's call: `y`
    takes production's call as right (a good case), a tool name asks for its arguments (production's, when it
    called that tool, are the default), `none` means no tool, and an empty answer skips the turn."""
    parameters = {t["function"]["name"]: set((t["function"].get("parameters") or {}).get("properties", {}))
                  for t in tools}
    answers: dict[tuple[int, int], Label] = {}
    for turn in turns:
        _show_turn(turn)
        tool = click.prompt("expected tool (y: production was right; a tool name; none: no tool; empty: skip)",
                            default="", show_default=False,
                            value_proc=lambda v: v.strip() if v.strip() == "y" else _known_tool(v.strip(), parameters))
        if not tool:
            continue
        produced = turn.actual["tool"] or NO_TOOL
        if tool == "y":
            tool, arguments = produced, dict(turn.actual["arguments"])
        elif tool == NO_TOOL:
            arguments = {}
        else:
            default = json.dumps(turn.actual["arguments"], ensure_ascii=False) if tool == produced else "{}"
            arguments = click.prompt("expected arguments (JSON object)", default=default,
                                     value_proc=lambda v, t=tool: _arguments(v, parameters.get(t, set())))
        answers[(turn.record, turn.number)] = Label("<answers>", None, {
            "tool": None if tool == NO_TOOL else tool, "arguments": arguments})
    return answers


def _show_turn(turn: Turn) -> None:
    """Print one turn as the labeller needs it: where it is, the conversation so far and production's call."""
    click.echo(f"\n--- line {turn.record}, turn {turn.number}")
    for message in turn.context:
        click.echo(f"  {message['role']}: {message_text(message)}")
    click.echo(f"  user: {turn.query}")
    arguments = json.dumps(turn.actual["arguments"], ensure_ascii=False)
    click.echo(f"  production called: {turn.actual['tool'] or NO_TOOL} {arguments}")


def _known_tool(value: str, parameters: dict[str, set]) -> str:
    """The answer if it is empty, `none` or a task tool; else ask again."""
    if value and value != NO_TOOL and value not in parameters:
        raise click.BadParameter(f"unknown tool {value!r}; the task's tools are: {', '.join(sorted(parameters))}")
    return value


def _arguments(value: str, names: set) -> dict:
    """The answer as a JSON object whose keys are the tool's parameters; else ask again."""
    try:
        arguments = loads(value)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"invalid JSON: {error.msg}") from None
    if not isinstance(arguments, dict):
        raise click.BadParameter("must be a JSON object")
    unknown = sorted(set(arguments) - names)
    if unknown:
        raise click.BadParameter(f"no parameter {', '.join(map(repr, unknown))}")
    return arguments


@cases.command("list")
@click.option("--label", type=click.Choice(["bad", "good"]), default=None)
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True)
@db_option
def list_cases(label, limit, db) -> None:
    """List stored cases: id, label, expected tool, query."""
    rows = Store(db).cases(label=label, limit=limit)
    for case in rows:
        query = case.query.replace("\n", " ")
        click.echo(f"{case.id:6d}  {case.label:4}  {case.expected.name:22}  {query[:70]}")
    if not rows:
        click.echo("no cases stored", err=True)


def selection_options(command):
    """`--source`, `--tag` and `--label`, repeatable, as `cases export` and `cases delete` take them."""
    command = click.option("--label", "labels", multiple=True, type=click.Choice(LABELS),
                           help="Cases with this label (repeatable).")(command)
    command = click.option("--tag", "tags", multiple=True, metavar="TAG",
                           help="Cases with this tag (repeatable: any of them).")(command)
    return click.option("--source", "sources", multiple=True, metavar="PATTERN",
                        help="Cases from this source (repeatable; a glob): the log or case file they were imported "
                             "from, or a log turn's FILE:RECORD#TURN.")(command)


@cases.command("export")
@selection_options
@click.option("--output", "-o", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              help="Case file to write (- for stdout). Its suffix picks the format unless --format is given.")
@click.option("--format", "fmt", type=click.Choice(EXPORT_FORMATS), default=None,
              help="jsonl or csv [default: csv for a .csv file, else jsonl].")
@db_option
def export_cases(sources, tags, labels, output, fmt, db) -> None:
    """Write stored cases (all, or those --source, --tag and --label select) as a case file that `cases import`
    and `run --cases` read back as the same cases.

    \b
    promptopt cases export --source chat.jsonl --label bad -o bad.jsonl
    """
    with user_errors():
        store = Store(db)
        selection = CaseSelection.of(sources, tags, labels)
        chosen = store.select_cases(selection) if selection else store.cases()
        fmt = export_format(output, fmt)
        if output == "-":
            write_cases_to(sys.stdout, chosen, fmt)
        else:
            write_cases(output, chosen, fmt)
    if output != "-":
        click.echo(f"wrote {len(chosen)} cases to {output}", err=True)


@cases.command("delete")
@click.argument("case_ids", nargs=-1, type=click.IntRange(1))
@selection_options
@click.option("--yes", is_flag=True, help="Delete without asking.")
@db_option
def delete_cases(case_ids, sources, tags, labels, yes, db) -> None:
    """Delete stored cases: CASE_IDS, or those --source, --tag and --label select. Refused, deleting nothing,
    when a run used any of them (delete the run first with `promptopt runs delete`)."""
    selection = CaseSelection.of(sources, tags, labels)
    if not case_ids and not selection:
        raise click.UsageError("name the cases to delete: CASE_IDS, or --source / --tag / --label")
    with user_errors():
        store = Store(db)
        chosen = [c.id for c in store.select_cases(selection)] if selection else []
        ids = list(dict.fromkeys([*case_ids, *chosen]))
        if not yes:
            click.confirm(f"delete {len(ids)} case(s) from {store.url}?", abort=True, err=True)
        deleted = store.delete_cases(ids)
    click.echo(f"deleted {deleted} case(s)" + (f"; {len(ids) - deleted} were not stored" if deleted < len(ids) else ""))


@cases.command("show")
@click.argument("case_id", type=int)
@db_option
def show_case(case_id, db) -> None:
    """Show one case in full, as JSON."""
    case = Store(db).case(case_id)
    if case is None:
        raise click.ClickException(f"no case {case_id} in the store")
    click.echo(json.dumps({"id": case.id, **case_record(case)}, ensure_ascii=False, indent=2))
