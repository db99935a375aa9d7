"""Two-tower retrieval: a customer tower and an item tower in one space, trained on purchases.

In progress (issue 11). Here so far: the training loss, an in-batch sampled softmax with the log-Q
correction (Yi et al., "Sampling-bias-corrected neural modeling for large corpus item recommendations",
RecSys 2019) and extra random negatives drawn from the whole catalogue (mixed negative sampling, Yang et
al. 2020), so products nobody bought still appear as negatives.
"""
from __future__ import annotations

import torch


def logq_softmax_loss(user: torch.Tensor, item: torch.Tensor, log_q: torch.Tensor,
                      temperature: torch.Tensor | float, negatives: torch.Tensor | None = None,
                      negatives_log_q: torch.Tensor | None = None, item_ids: torch.Tensor | None = None,
                      negative_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of each customer's own purchase among the batch's candidates.

    user (B, d) and item (B, d): row i is customer i and the product they bought. Every row's candidates
    are the B batch items plus the M ``negatives`` (M, d); a candidate's logit is
    ``<user, candidate> / temperature - log_q``, where ``log_q`` (B,) and ``negatives_log_q`` (M,) are the
    log probabilities of drawing each candidate: a batch item is drawn as often as it is bought, so
    popular products would be over-penalised as negatives without the correction; a uniform negative has
    log(1 / n_products). With ``item_ids`` (B,) (and ``negative_ids`` (M,)), a candidate that is the row's
    own product in another column (an "accidental hit") is left out of that row's softmax.
    Returns a scalar tensor.
    """
    candidates, correction, ids = item, log_q, item_ids
    if negatives is not None:
        if negatives_log_q is None:
            raise ValueError("negatives need their negatives_log_q")
        candidates = torch.cat([item, negatives])
        correction = torch.cat([log_q, negatives_log_q])
        if item_ids is not None:
            if negative_ids is None:
                raise ValueError("with item_ids, negatives need their negative_ids")
            ids = torch.cat([item_ids, negative_ids])
    logits = user @ candidates.T / temperature - correction[None, :]
    rows = torch.arange(len(user))
    if ids is not None:
        hit = (ids[None, :] == item_ids[:, None])
        hit[rows, rows] = False  # the row's own column stays
        logits = logits.masked_fill(hit, float("-inf"))
    return torch.nn.functional.cross_entropy(logits, rows)
