"""`promptopt runs compare -o FILE`: the comparison table as a self-contained HTML page."""
from __future__ import annotations

from datetime import datetime, timezone

from promptopt.runs.compare import COLUMNS, NUMERIC_COLUMNS, Comparison
from promptopt.runs.html_page import esc, page, section, table


def render_comparison(comparison: Comparison) -> str:
    """The whole HTML page: which runs, on how many common test cases, and the table."""
    ids = [run.run_id for run in comparison.runs]
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (f"<header>\n<h1>promptopt: {len(ids)} runs compared</h1>\n<p>{esc(', '.join(ids))} · on the "
              f"{len(comparison.common_case_ids)} test cases they share · made {made}</p>\n</header>")
    explanation = ('<p class="note">Each run\'s winner on the common test cases, with a 95% Wilson interval; '
                   "+/- counts the cases it gets right and the first run's winner wrong, and the other way round; "
                   "the paired exact McNemar p tests those against chance. Calls, cost and wall time are the whole "
                   "run's.</p>")
    body = table(COLUMNS, [[esc(cell) for cell in row] for row in comparison.rows()],
                 classes={column: "num" for column in NUMERIC_COLUMNS}, attributes='id="compare-table"')
    return page(f"promptopt: runs {' vs '.join(ids)}", header + section("compare", "Winners side by side",
                                                                        explanation + body))
