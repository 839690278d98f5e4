"""`promptopt bpo pairs|train|rewrite`: the BPO strategy's feedback pairs and its fine-tuned rewriter, outside a
run."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from promptopt.cli.setting_flags import setting_flags
from promptopt.cli.shared import db_option, progress_options, user_errors
from promptopt.optimizer.strategies.bpo.rewriter import MODES
from promptopt.runs.case_import import CaseFileError
from promptopt.runs.store import Store
from promptopt.tasks import bundled_task, load_prompt, load_tools


@click.group()
def bpo() -> None:
    """BPO: feedback pairs and the rewriter trained on them.

    \b
    promptopt bpo pairs import prefs.jsonl    # preference data -> analysed, filtered pairs
    promptopt bpo pairs export -o pairs.jsonl # kept pairs, chat format
    promptopt bpo train -o rewriter/          # fine-tune the embedded model on the stored pairs
    promptopt bpo rewrite system.md --rewriter rewriter/
    promptopt run --strategy bpo --rewriter rewriter/
    """


@bpo.group()
def pairs() -> None:
    """List, export and import BPO pairs."""


@pairs.command("list")
@click.option("--run", "run_id", default=None, help="Only this run's pairs (default: all).")
@click.option("--all", "with_rejected", is_flag=True, help="Also the pairs the filters rejected.")
@db_option
def list_pairs(run_id, with_rejected, db) -> None:
    """Stored pairs: id, run, source, kept or why not, and the start of the improved prompt."""
    rows = Store(db).bpo_pairs(run_id, kept_only=not with_rejected)
    for row in rows:
        fate = "kept" if row.kept else f"rejected: {row.rejection}"
        click.echo(f"{row.id:6d}  {row.run_id or '-':12}  {row.source:17}  {fate[:50]:50}  "
                   f"{row.optimized[:60].replace(chr(10), ' ')}")
    if not rows:
        click.echo("no pairs stored", err=True)


@pairs.command("export")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write to this file (default: stdout).")
@click.option("--run", "run_id", default=None, help="Only this run's pairs (default: all).")
@db_option
def export_pairs(output, run_id, db) -> None:
    """Kept pairs as JSON Lines in chat format (system, user: original, assistant: optimized)."""
    from promptopt.optimizer.strategies.bpo.pairs import export_jsonl

    rows = Store(db).bpo_pairs(run_id)
    text = export_jsonl([(r.original, r.optimized) for r in rows])
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(rows)} pair(s) to {output}", err=True)
    else:
        click.echo(text, nl=False)


@pairs.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@setting_flags(["optimizer_model", "optimizer_base_url", "optimizer_api_key", "config_file"])
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True,
              help="Longest analysis and rewrite the optimizer model may write.")
@db_option
def import_pairs(file, optimizer_model, optimizer_base_url, optimizer_api_key, config_file, max_tokens, db) -> None:
    """Turn preference data into pairs: FILE holds one {"prompt", "good", "bad"} object a line (optional
    "request"); the optimizer model analyses each and writes an improved prompt; pairs are filtered and stored.
    A file with any problem imports nothing."""
    from promptopt.optimizer.strategies.bpo.pairs import construct_pairs, read_preferences

    with user_errors():
        groups = read_preferences(file)
    store = Store(db)
    model = load_optimizer(optimizer_model, optimizer_base_url, optimizer_api_key, config_file)

    def ask(requests, temperature, tokens):
        completions = model.generate_many(requests, temperature=temperature, max_tokens=tokens, role="optimizer")
        store.add_calls(None, [c.record for c in completions])
        return completions

    made = construct_pairs(groups, ask, [], max_tokens=max_tokens)
    store.add_bpo_pairs(None, made)
    kept = sum(p.kept for p in made)
    click.echo(f"{len(groups)} preference(s): {kept} pair{'s' if kept != 1 else ''} kept, {len(made) - kept} rejected")
    for pair in made:
        if not pair.kept:
            click.echo(f"  rejected: {pair.rejection}", err=True)


@bpo.command()
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False),
              help="Directory to save the rewriter to (model, tokenizer, rewriter.json).")
@click.option("--run", "run_id", default=None, help="Train on this run's kept pairs (default: all kept pairs).")
@click.option("--pairs", "pairs_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Train on an exported chat-format JSONL file instead of the store.")
@click.option("--base", type=click.Path(file_okay=False, exists=True), default=None,
              help="Model directory to start from [default: the embedded model's fp32 weights].")
@click.option("--epochs", type=click.IntRange(1), default=1, show_default=True, help="Passes over the pairs.")
@click.option("--steps", type=click.IntRange(1), default=None, help="Optimizer steps (overrides --epochs).")
@click.option("--lr", type=click.FloatRange(0, min_open=True), default=None,
              help="Learning rate [default: 1e-3 LoRA, 5e-5 full].")
@click.option("--max-length", type=click.IntRange(16), default=512, show_default=True,
              help="Tokens per training sequence (longer ones are cut).")
@click.option("--lora/--full", default=True, show_default=True,
              help="LoRA (rank 8 on the attention projections, merged before saving; ~4x faster per step on CPU) "
                   "or a full fine-tune.")
@click.option("--seed", type=int, default=0, show_default=True)
@db_option
@progress_options
def train(output_dir, run_id, pairs_file, base, epochs, steps, lr, max_length, lora, seed, db, progress) -> None:
    """Fine-tune a small causal LM on BPO pairs (CPU, batch size 1), printing the loss as it goes."""
    from promptopt.optimizer.strategies.bpo.pairs import read_chat_pairs
    from promptopt.optimizer.strategies.bpo.rewriter import train_rewriter

    if pairs_file:
        try:
            data = read_chat_pairs(pairs_file)
        except CaseFileError as error:
            raise click.ClickException(f"cannot read the pairs:\n{error}") from None
    else:
        data = [(r.original, r.optimized) for r in Store(db).bpo_pairs(run_id)]
    if not data:
        raise click.ClickException("no kept pairs to train on (see `promptopt bpo pairs list --all`)")
    try:
        result = train_rewriter(data, output_dir, base=base, steps=steps, epochs=epochs, lr=lr,
                                max_length=max_length, lora=lora, seed=seed, progress=progress)
    except (RuntimeError, ValueError) as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"start loss {result.start_loss:.4f}, end loss {result.end_loss:.4f} after {result.steps} steps "
               f"({result.seconds:.0f}s); rewriter saved to {result.output_dir}")


@bpo.command()
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the rewrite here (aggressive mode: FILE.1.EXT, FILE.2.EXT ...); default: stdout.")
@click.option("--rewriter", type=click.Path(file_okay=False, exists=True), default=None,
              help="Fine-tuned rewriter directory; default: the prompted rewriter on --optimizer-model.")
@setting_flags(["optimizer_model", "optimizer_base_url", "optimizer_api_key", "config_file"])
@click.option("--mode", type=click.Choice(sorted(MODES)), default="stable", show_default=True,
              help="stable: one rewrite at low temperature; aggressive: several at a higher one (all valid ones "
                   "are written: choosing among them needs cases, which `promptopt run --strategy bpo` has).")
@click.option("--samples", type=click.IntRange(1), default=None, help="Rewrites in aggressive mode [default: 4].")
@click.option("--demonstrations", type=click.IntRange(0), default=2, show_default=True,
              help="Stored pairs shown to the prompted rewriter.")
@click.option("--max-tokens", type=click.IntRange(1), default=1024, show_default=True,
              help="Longest rewrite the model may write.")
@click.option("--tools", "tools_file", type=click.Path(dir_okay=False), default=None,
              help="Tools every rewrite must still name where FILE names them [default: the bundled task's].")
@db_option
def rewrite(file, output, rewriter, optimizer_model, optimizer_base_url, optimizer_api_key, config_file, mode,
            samples, demonstrations, max_tokens, tools_file, db) -> None:
    """Rewrite the system prompt in FILE with a BPO rewriter: the rewriter writes its editable text, and the tool
    list, protected regions and examples are kept as they are; invalid rewrites (a tool dropped, too long) are
    refused."""
    from promptopt.optimizer.candidates import validation_problem
    from promptopt.optimizer.prompt_parts import PromptParts
    from promptopt.optimizer.strategies.bpo.rewriter import Mode, load_rewriter, prompted_rewriter
    from promptopt.tasks.tool_routing import ToolRoutingTask

    with user_errors():
        original = load_prompt(file)
        tools = load_tools(tools_file) if tools_file else bundled_task("tool-routing").tools
    names = ToolRoutingTask(tools=tools).tool_names
    parts = PromptParts.of(original, names)
    if rewriter:
        chosen = load_rewriter(rewriter)
    else:
        model = load_optimizer(optimizer_model, optimizer_base_url, optimizer_api_key, config_file)
        stored = [(r.original, r.optimized) for r in Store(db).bpo_pairs()]
        chosen = prompted_rewriter(model, stored, parts.editable, demonstrations)
    settings = MODES[mode] if mode == "stable" else Mode(samples or MODES[mode].samples, MODES[mode].temperature)
    texts, problems = [], []
    for completion in chosen.rewrite(parts.editable, settings, max_tokens):
        text = parts.splice(completion.text)
        problem = completion.error or validation_problem(text, original, names)
        if problem:
            problems.append(problem)
        elif text not in texts:
            texts.append(text)
    for problem in problems:
        click.echo(f"rewrite refused: {problem}", err=True)
    if not texts:
        raise click.ClickException(f"no valid rewrite from the {chosen.kind} rewriter ({len(problems)} refused)")
    if output and len(texts) == 1:
        Path(output).write_text(texts[0], encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
    elif output:
        target = Path(output)
        for index, text in enumerate(texts, start=1):
            target.with_suffix(f".{index}{target.suffix}").write_text(text, encoding="utf-8")
        click.echo(f"wrote {len(texts)} rewrites: {target.with_suffix(f'.1{target.suffix}')} ...", err=True)
    else:
        for index, text in enumerate(texts, start=1):
            if len(texts) > 1:
                click.echo(f"--- rewrite {index} of {len(texts)}")
            click.echo(text)


def load_optimizer(model: str | None, base_url: str | None, api_key: str | None, config_file: str | None) -> Any:
    """The optimizer-model backend from flags, config file and environment (like `promptopt run`'s)."""
    from promptopt.config import load_config
    from promptopt.models import load_model, resolve_model_settings
    from promptopt.models.pricing import load_prices

    with user_errors():
        config = load_config(config_file)
        settings = resolve_model_settings("optimizer_model", model, base_url, api_key, config)
        return load_model(settings, prices=load_prices(extra=config.get("prices")))
