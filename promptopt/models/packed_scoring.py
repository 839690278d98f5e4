"""Packed log-prob scoring for the embedded model, the fast path behind `choice_logprobs` and `channel_logprobs`.

The system prompt is encoded once and its key/value cache reused; each row's branches are packed as a token
trie into one sequence (a tree attention mask keeps them apart; shared tokens are fed once, a branch's last
token never), rows are sorted by length so batches carry little padding, and one forward scores a whole batch.
`reference_scoring` computes the same sums one forward per branch, to check this against.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

# One row to score: the tokens all its branches share, then each branch's tokens and the index of its first
# scored token (earlier tokens are context).
Row = tuple[list[int], list[tuple[list[int], int]]]


class _Tree:
    """Shared tokens followed by a trie of branches, flattened for one packed forward.

    Only tokens whose output is needed are fed (a branch's last token is a target, never an input); branches
    that start alike share those tokens. `terms[j]` lists (predictor index, target token) for branch j's scored
    tokens, and `predictors` the input columns whose next-token distributions they read.
    """

    def __init__(self, shared: list[int], branches: list[tuple[list[int], int]]) -> None:
        if not shared:
            raise ValueError("a packed row needs at least one shared token")
        parent = list(range(-1, len(shared) - 1))
        tokens, depth = list(shared), list(range(len(shared)))
        children: dict[tuple[int, int], int] = {}
        paths = []
        for ids, _ in branches:
            node, path = len(shared) - 1, []
            for token in ids:
                key = (node, token)
                if key not in children:
                    children[key] = len(tokens)
                    tokens.append(token)
                    parent.append(node)
                    depth.append(depth[node] + 1)
                node = children[key]
                path.append(node)
            paths.append(path)
        fed = set(range(len(shared))) | {p for p in parent[len(shared):]}
        keep = sorted(fed)
        column = {node: k for k, node in enumerate(keep)}
        self.tokens = [tokens[node] for node in keep]
        self.depths = [depth[node] for node in keep]
        self.parents = [column[parent[node]] if parent[node] >= 0 else -1 for node in keep]
        self.size = len(keep)
        predictor: dict[int, int] = {}
        self.terms: list[list[tuple[int, int]]] = []
        for (ids, start), path in zip(branches, paths):
            terms = []
            for t in range(start, len(ids)):
                source = column[parent[path[t]]]
                terms.append((predictor.setdefault(source, len(predictor)), ids[t]))
            self.terms.append(terms)
        self.predictors = list(predictor)

    def ancestry(self) -> Any:
        """Boolean (size, size) mask: each fed token sees itself and its ancestors."""
        import torch

        mask = np.zeros((self.size, self.size), dtype=bool)
        for node, up in enumerate(self.parents):
            if up >= 0:
                mask[node] = mask[up]
            mask[node, node] = True
        return torch.from_numpy(mask)


@dataclass
class PrefixCache:
    """Key/value states of one encoded system prompt, reused for every conversation scored under it."""

    text: str
    length: int
    layers: list[tuple[Any, Any]]


def encode_prefix(causal_lm: Any, text: str, ids: list[int]) -> PrefixCache:
    """Run the system turn (`text`, tokenized as `ids`) once and keep its key/value states."""
    import torch

    with torch.inference_mode():
        out = causal_lm.model(input_ids=torch.tensor([ids]), use_cache=True)
    layers = [(layer.keys, layer.values) for layer in out.past_key_values.layers]
    return PrefixCache(text=text, length=len(ids), layers=layers)


def score_rows(causal_lm: Any, prefix: PrefixCache, rows: Sequence[Row], batch_size: int) -> np.ndarray:
    """Each branch's summed log-probs after `prefix`, (rows, most branches); shortest rows are batched first."""
    width = max((len(branches) for _, branches in rows), default=0)
    scores = np.zeros((len(rows), width))
    trees = [_Tree(shared, branches) for shared, branches in rows]
    order = sorted(range(len(rows)), key=lambda i: trees[i].size)
    keyword = cache_keyword(causal_lm.model)
    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        scores[batch] = _score_trees(causal_lm, prefix, [trees[i] for i in batch], width, keyword)
    return scores


def cache_keyword(decoder: Any) -> str:
    """The name the decoder's forward (and `generate`) takes a key/value cache under: `cache` from transformers
    5.24 (which warns about the old name), `past_key_values` before."""
    return "cache" if "cache" in inspect.signature(decoder.forward).parameters else "past_key_values"


def _score_trees(causal_lm: Any, prefix: PrefixCache, trees: list[_Tree], width: int, cache_keyword: str
                 ) -> np.ndarray:
    """One forward for a batch of token trees over the cached system prompt (passed as `cache_keyword`); sums of
    the scored log-probs."""
    import torch
    from transformers import DynamicCache

    batch, plen = len(trees), prefix.length
    length = max(tree.size for tree in trees)
    ids = torch.zeros((batch, length), dtype=torch.long)
    positions = torch.zeros((batch, length), dtype=torch.long)
    mask = torch.zeros((batch, 1, length, plen + length), dtype=torch.bool)
    mask[:, :, :, :plen] = True
    for row, tree in enumerate(trees):
        n = tree.size
        ids[row, :n] = torch.tensor(tree.tokens)
        positions[row, :n] = plen + torch.tensor(tree.depths)
        mask[row, 0, :n, plen:plen + n] = tree.ancestry()
        pads = torch.arange(n, length)
        mask[row, 0, pads, plen + pads] = True
        positions[row, n:] = plen + pads
    cache = DynamicCache([(k.expand(batch, -1, -1, -1), v.expand(batch, -1, -1, -1)) for k, v in prefix.layers])
    with torch.inference_mode():
        hidden = causal_lm.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True,
            **{cache_keyword: cache}).last_hidden_state
        rows = torch.tensor([r for r, tree in enumerate(trees) for _ in tree.predictors])
        cols = torch.tensor([c for tree in trees for c in tree.predictors])
        logprobs = torch.log_softmax(causal_lm.lm_head(hidden[rows, cols]).float(), dim=-1)
        flat = logprobs.numpy()
    out = np.zeros((batch, width))
    offset = 0
    for row, tree in enumerate(trees):
        for j, terms in enumerate(tree.terms):
            out[row, j] = sum(float(flat[offset + k, token]) for k, token in terms)
        offset += len(tree.predictors)
    return out
