"""Building blocks of promptopt's self-contained HTML pages (the run report, the run comparison): one page with
its style inline, tables, sections and figure tiles. Nothing is fetched when the page is opened: no CDN, no web
font, no external script."""
from __future__ import annotations

import html
from typing import Any, Mapping, Sequence

STYLE = """
:root { --ink: #1b2433; --muted: #5b6577; --line: #dde2ea; --soft: #f4f6f9; --accent: #2f6fdb;
        --good: #18794e; --good-bg: #e3f5ea; --bad: #b42318; --bad-bg: #fdecea; --warn-bg: #fff6db; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--ink); background: #fff; font: 14px/1.5 system-ui, -apple-system, "Segoe UI",
       Roboto, "Helvetica Neue", Arial, "PingFang SC", "Hiragino Sans GB", "Noto Sans CJK SC",
       "WenQuanYi Zen Hei", "Microsoft YaHei", sans-serif; }
main { max-width: 1320px; margin: 0 auto; padding: 24px 28px 60px; }
header h1 { font-size: 22px; margin: 0 0 4px; }
header p { margin: 0; color: var(--muted); }
nav { margin: 14px 0 8px; display: flex; flex-wrap: wrap; gap: 6px; }
nav a { color: var(--accent); text-decoration: none; padding: 3px 10px; border: 1px solid var(--line);
        border-radius: 14px; font-size: 13px; }
nav a:hover { background: var(--soft); }
section { margin-top: 30px; }
h2 { font-size: 17px; margin: 0 0 10px; padding-bottom: 6px; border-bottom: 1px solid var(--line); }
p.note { color: var(--muted); margin: 6px 0; }
.banner { background: var(--warn-bg); border: 1px solid #f0d98c; padding: 8px 12px; border-radius: 6px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
table.compact { width: auto; min-width: 50%; }
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(200px, 1fr)); gap: 8px 18px;
         margin: 14px 0 4px; }
.facts div { background: var(--soft); border-radius: 6px; padding: 8px 12px; }
.facts b { display: block; font-size: 16px; font-variant-numeric: tabular-nums; }
.facts span { color: var(--muted); font-size: 12px; }
figure { margin: 8px 0; max-width: 980px; }
figure svg { display: block; height: auto; }
figcaption { color: var(--muted); font-size: 12px; }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; white-space: nowrap; }
.badge.fixed { background: var(--good-bg); color: var(--good); }
.badge.broken { background: var(--bad-bg); color: var(--bad); }
.badge.still-wrong { background: #f1f1f1; color: #6d5b2d; }
.badge.still-right { background: #eef3fd; color: #30538f; }
.filters { display: flex; flex-wrap: wrap; gap: 10px 16px; align-items: center; margin: 6px 0 10px; }
.filters label { font-size: 13px; color: var(--muted); }
.filters select, .filters input { font: inherit; padding: 3px 6px; border: 1px solid var(--line); border-radius: 4px; }
.scroll { max-height: 640px; overflow: auto; border: 1px solid var(--line); border-radius: 6px; }
.scroll th { position: sticky; top: 0; z-index: 1; }
td.query { min-width: 180px; max-width: 320px; }
td.context { min-width: 220px; max-width: 320px; color: var(--muted); font-size: 12px; }
td.nowrap { white-space: nowrap; }
td.context div { white-space: pre-wrap; overflow-wrap: anywhere; }
code, .diff { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "Noto Sans Mono CJK SC", monospace;
              font-size: 12.5px; }
.diff { border: 1px solid var(--line); border-radius: 6px; overflow: auto; }
.diff .line { display: grid; grid-template-columns: 3.2em 3.2em 1.4em 1fr; white-space: pre-wrap;
              overflow-wrap: anywhere; border-left: 4px solid transparent; }
.diff .line span.n { color: #9aa3b2; text-align: right; padding-right: 6px; user-select: none; }
.diff .line span.sign { color: var(--muted); user-select: none; text-align: center; }
.diff .added { background: var(--good-bg); }
.diff .removed { background: var(--bad-bg); }
.diff .protected { border-left-color: #b08800; background-image: linear-gradient(90deg, #fff6db, #fff6db); }
.diff .added.protected, .diff .removed.protected { background-image: none; }
.diff .tag { margin-left: 8px; font-size: 11px; color: #8a6d00; background: #fff0b3; padding: 0 6px;
             border-radius: 8px; font-family: system-ui, sans-serif; }
.diff details summary { cursor: pointer; color: var(--muted); padding: 2px 10px; background: var(--soft); }
.legend span { margin-right: 14px; font-size: 12px; }
.legend i { display: inline-block; width: 12px; height: 12px; vertical-align: -2px; margin-right: 4px;
            border-radius: 2px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""


def esc(value: Any) -> str:
    """User text made safe to put in HTML, in text or in an attribute."""
    return html.escape(str(value), quote=True)


def page(title: str, body: str, script: str = "") -> str:
    """A whole HTML document: UTF-8, the style inline, the body, and an inline script if any."""
    tail = f"<script>\n{script}\n</script>\n" if script else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{esc(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
            f"{tail}</body>\n</html>\n")


def section(anchor: str, title: str, body: str) -> str:
    """A titled section the page's navigation links to by `anchor`."""
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def navigation(sections: Sequence[tuple[str, str]]) -> str:
    """Links to the (anchor, title) sections."""
    return "<nav>" + "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in sections) + "</nav>"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], classes: Mapping[int, str] | None = None,
          attributes: str = "", row_attributes: Sequence[str] = ()) -> str:
    """A table: `headers` are plain text, `rows` cells are HTML already (escape user text with `esc`); `classes`
    gives columns a CSS class by index (`num`: right-aligned figures); `row_attributes` (HTML) go on body rows."""
    classes = classes or {}

    def cell(tag: str, index: int, content: str) -> str:
        kind = f' class="{classes[index]}"' if index in classes else ""
        return f"<{tag}{kind}>{content}</{tag}>"

    head = "".join(cell("th", i, esc(h)) for i, h in enumerate(headers))
    body = "\n".join(f"<tr{(' ' + row_attributes[r]) if r < len(row_attributes) else ''}>"
                     + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for r, row in enumerate(rows))
    return f"<table{(' ' + attributes) if attributes else ''}>\n<thead><tr>{head}</tr></thead>\n" \
           f"<tbody>\n{body}\n</tbody>\n</table>"


def facts(items: Sequence[tuple[str, str]]) -> str:
    """Key figures as tiles: (value HTML, caption text)."""
    return '<div class="facts">' + "".join(f"<div><b>{value}</b><span>{esc(caption)}</span></div>"
                                           for value, caption in items) + "</div>"
