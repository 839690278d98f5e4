"""Reference scoring for the embedded model, one full forward per branch: slow, kept as the yardstick that tests
and benchmarks/local_scoring.py hold `packed_scoring` to (via `EmbeddedModel.*_logprobs_naive`)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from promptopt.models.packed_scoring import Row


def score_rows_naive(causal_lm: Any, system_ids: list[int], rows: Sequence[Row]) -> np.ndarray:
    """Each branch's summed log-probs, one forward over system turn, shared tokens and branch per branch."""
    import torch

    scores = np.zeros((len(rows), max((len(b) for _, b in rows), default=0)))
    for i, (shared, branches) in enumerate(rows):
        for j, (tokens, start) in enumerate(branches):
            context = system_ids + shared + tokens[:start]
            ids = torch.tensor([context + tokens[start:]])
            with torch.inference_mode():
                logits = causal_lm(input_ids=ids).logits[0].float()
            logprobs = torch.log_softmax(logits[len(context) - 1:-1], dim=-1)
            target = torch.tensor(tokens[start:])
            scores[i, j] = logprobs[torch.arange(len(target)), target].sum().item()
    return scores
