"""Dollar cost of model calls: a documented table of list prices (USD per million tokens, input / output) that
users extend or override with a JSON file of the same shape. Models not in the table cost 0 and say so."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

# List prices in USD per 1M tokens (input, output), as published by each vendor in 2025; check yours.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "embedded": (0.0, 0.0),
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
    "deepseek-chat": (0.27, 1.10),
    "deepseek-reasoner": (0.55, 2.19),
    "qwen-plus": (0.40, 1.20),
    "qwen-turbo": (0.05, 0.20),
    "qwen-max": (1.60, 6.40),
}


class PriceFileError(ValueError):
    """A price file that is not `{"model": {"input": X, "output": Y}, ...}`."""


@dataclass(frozen=True)
class PriceTable:
    """Prices by model name; a name matches an entry exactly, or by its longest entry prefix
    (`gpt-4o-mini-2024-07-18` costs what `gpt-4o-mini` costs)."""

    prices: Mapping[str, tuple[float, float]]

    def price(self, model: str) -> tuple[float, float] | None:
        if model in self.prices:
            return self.prices[model]
        matches = [name for name in self.prices if model.startswith(name)]
        return self.prices[max(matches, key=len)] if matches else None

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        """USD for one call; 0 for a model the table does not know."""
        price = self.price(model)
        if price is None:
            return 0.0
        return (tokens_in * price[0] + tokens_out * price[1]) / 1_000_000


def load_prices(path: str | Path | None = None, extra: Mapping[str, Mapping[str, float]] | None = None) -> PriceTable:
    """The default table, overridden by the JSON file at `path` (if given) and then by `extra`."""
    prices = dict(DEFAULT_PRICES)
    entries: dict[str, object] = {}
    if path is not None:
        try:
            entries.update(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, ValueError) as error:
            raise PriceFileError(f"{path}: cannot read prices: {error}") from error
    entries.update(extra or {})
    for name, entry in entries.items():
        if not (isinstance(entry, dict) and isinstance(entry.get("input"), (int, float))
                and isinstance(entry.get("output"), (int, float))):
            raise PriceFileError(f"{path or 'prices'}: {name}: expected {{\"input\": USD, \"output\": USD}} per 1M tokens")
        prices[name] = (float(entry["input"]), float(entry["output"]))
    return PriceTable(prices)
