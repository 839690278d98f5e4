"""Reading promptopt's HTML pages back as a browser would: a table's body rows (their attributes and the text of
each cell), and the external resources a page would fetch."""
from __future__ import annotations

import re
from html.parser import HTMLParser

EXTERNAL = re.compile(r"""(?:src|href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//"""
                      r"""|@import|url\(\s*["']?(?:https?:)?//""", re.I)
"""An attribute or CSS reference that would make a browser fetch something from elsewhere."""


class TableRows(HTMLParser):
    """The body rows of the table with id `table_id`: each row's attributes, and its cells' text."""

    def __init__(self, table_id: str) -> None:
        super().__init__(convert_charrefs=True)
        self.table_id = table_id
        self.depth = 0
        self.in_body = False
        self.rows: list[dict] = []
        self.cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "table" and (self.depth or attributes.get("id") == self.table_id):
            self.depth += 1
        elif self.depth == 1 and tag == "tbody":
            self.in_body = True
        elif self.depth == 1 and self.in_body and tag == "tr":
            self.rows.append({"attributes": attributes, "cells": []})
        elif self.depth == 1 and self.in_body and tag == "td":
            self.cell = []
        elif self.cell is not None and tag == "br":
            self.cell.append("\n")

    def handle_endtag(self, tag):
        if tag == "table" and self.depth:
            self.depth -= 1
        elif tag == "tbody" and self.depth == 1:
            self.in_body = False
        elif tag == "td" and self.cell is not None:
            self.rows[-1]["cells"].append("".join(self.cell).strip())
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)


def table_rows(page: str, table_id: str) -> list[dict]:
    """The body rows of the table `table_id` in `page`: {"attributes": {...}, "cells": [text, ...]}."""
    reader = TableRows(table_id)
    reader.feed(page)
    return reader.rows


def external_references(page: str) -> list[str]:
    """Every place in `page` that would fetch a resource from another host."""
    return [match.group(0) for match in EXTERNAL.finditer(page)]
