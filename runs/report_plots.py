"""The HTML report's plots, drawn with matplotlib (no GUI backend, no pyplot state) and returned as inline `<svg>`
text: the search trajectory and the seed-vs-winner confusion matrices."""
from __future__ import annotations

import io
import logging
import re
import warnings
from functools import lru_cache
from typing import Sequence

from matplotlib import font_manager, rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from promptopt.case import NO_TOOL
from promptopt.runs.trajectory import CandidateScores

CJK_FONTS = ("Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "WenQuanYi Micro Hei",
             "Droid Sans Fallback", "PingFang SC", "Microsoft YaHei", "SimHei", "AR PL UMing CN")
"""Fonts tried, after DejaVu Sans, for characters it lacks (tool names in Chinese, say), where installed."""
TRAIN, VAL, ACCEPTED, INCUMBENT = "#8c96a8", "#2f6fdb", "#e8a317", "#1b3a6b"


@lru_cache(maxsize=1)
def font_family() -> list[str]:
    """DejaVu Sans, then any installed CJK font (matplotlib falls back glyph by glyph); a glyph none has is drawn
    as a box, not an error."""
    installed = {entry.name for entry in font_manager.fontManager.ttflist}
    return ["DejaVu Sans", *[name for name in CJK_FONTS if name in installed]]


def svg_text(figure: Figure) -> str:
    """The figure as an `<svg>` element to inline in HTML: text drawn as paths (no font needed to view it), no
    XML prolog, DOCTYPE or metadata; at its own size, shrunk to fit a narrower container."""
    FigureCanvasAgg(figure)
    buffer = io.StringIO()
    fonts = logging.getLogger("matplotlib.font_manager")
    level = fonts.level
    fonts.setLevel(logging.ERROR)  # "font weight normal not found, using 500": nothing the user can act on
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from")
            figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    finally:
        fonts.setLevel(level)
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    svg = re.sub(r"<metadata>.*?</metadata>\s*", "", svg, flags=re.S)
    return re.sub(r'<svg([^>]*?) width="([^"]*)" height="([^"]*)"',
                  r'<svg\1 width="\2" height="\3" style="max-width: 100%; height: auto"', svg, count=1)


def _figure(width: float, height: float, salt: str) -> tuple[Figure, dict]:
    """A figure and the settings to draw and save it under (`rc_context`): the same data gives the same SVG."""
    settings = {"svg.fonttype": "path", "svg.hashsalt": salt, "font.family": font_family(), "font.size": 10,
                "axes.spines.top": False, "axes.spines.right": False}
    return Figure(figsize=(width, height), layout="constrained"), settings


def trajectory_svg(points: Sequence[CandidateScores], incumbent: Sequence[tuple[int, float]]) -> str:
    """Every candidate's training and validation score (%) by step, accepted ones starred, and the incumbent's
    validation score after each step."""
    figure, settings = _figure(9.0, 3.5, "trajectory")
    with rc_context(settings):
        axes = figure.add_subplot()
        offsets = _offsets(points)
        for point, x in zip(points, offsets):
            if point.train is not None:
                axes.scatter(x - 0.04, 100 * point.train, s=28, facecolors="none", edgecolors=TRAIN, linewidths=1.2,
                             zorder=3)
            if point.val is not None:
                axes.scatter(x + 0.04, 100 * point.val, s=36, color=VAL, marker="s", zorder=4)
            if point.accepted:
                score = point.val if point.val is not None else point.train
                if score is not None:
                    axes.scatter(x + 0.04, 100 * score, s=260, marker="*", color=ACCEPTED, edgecolors="#6b4a00",
                                 linewidths=0.8, zorder=3.5)
        if incumbent:
            steps, scores = zip(*incumbent)
            axes.step(steps, [100 * s for s in scores], where="post", color=INCUMBENT, linewidth=1.4, alpha=0.6,
                      zorder=2)
        last = max([p.step for p in points] + [s for s, _ in incumbent] + [1])
        axes.set_xticks(range(0, last + 1))
        axes.set_xticklabels(["seed" if step == 0 else str(step) for step in range(0, last + 1)])
        axes.set_xlim(-0.5, last + 0.5)
        axes.set_ylim(-4, 104)
        axes.set_xlabel("step")
        axes.set_ylabel("cases passed (%)")
        axes.grid(axis="y", color="#e3e6eb", linewidth=0.8)
        axes.legend(handles=_legend(), loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        return svg_text(figure)


def _offsets(points: Sequence[CandidateScores]) -> list[float]:
    """Each candidate's x position: its step, spread within the step when a step has several candidates."""
    by_step: dict[int, int] = {}
    for point in points:
        by_step[point.step] = by_step.get(point.step, 0) + 1
    seen: dict[int, int] = {}
    offsets = []
    for point in points:
        count, index = by_step[point.step], seen.get(point.step, 0)
        seen[point.step] = index + 1
        offsets.append(point.step + (0.0 if count == 1 else -0.22 + 0.44 * index / (count - 1)))
    return offsets


def _legend() -> list[Line2D]:
    return [Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor=TRAIN,
                   label="training sample"),
            Line2D([], [], marker="s", linestyle="", color=VAL, label="validation"),
            Line2D([], [], marker="*", linestyle="", color=ACCEPTED, markeredgecolor="#6b4a00", markersize=13,
                   label="accepted"),
            Line2D([], [], color=INCUMBENT, alpha=0.6, label="incumbent (validation)")]


def confusion_svg(names: Sequence[str], matrices: Sequence[tuple[str, list[list[int]]]]) -> str:
    """One heat map per (title, counts[expected][chosen]) side by side, on one colour scale, counts written in."""
    labels = ["no tool" if name == NO_TOOL else name for name in names]
    size = len(labels)
    side = max(2.6, 0.34 * size + 1.7)
    figure, settings = _figure(side * len(matrices), side + 0.5, "confusion")
    top = max([1] + [count for _, matrix in matrices for row in matrix for count in row])
    with rc_context(settings):
        grid = figure.subplots(1, len(matrices), squeeze=False)[0]
        for axes, (title, matrix) in zip(grid, matrices):
            axes.imshow(matrix, cmap="Blues", vmin=0, vmax=top)
            for row in range(size):
                for column in range(size):
                    count = matrix[row][column]
                    if count:
                        axes.text(column, row, str(count), ha="center", va="center", fontsize=9,
                                  color="white" if count > top * 0.55 else "#1b2433",
                                  fontweight="bold" if row == column else "normal")
            axes.set_xticks(range(size), labels, rotation=45, ha="right", rotation_mode="anchor")
            axes.set_yticks(range(size), labels)
            axes.set_xlabel("chosen tool")
            axes.set_ylabel("expected tool")
            axes.set_title(title, fontsize=10)
            for spine in axes.spines.values():
                spine.set_visible(False)
        return svg_text(figure)
