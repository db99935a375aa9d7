"""The evaluation's report, typed: the split, each model's numbers and choices, the paired comparisons.

:func:`core.recs.evaluate.evaluate` gives it as JSON (the CLI prints it, the artefact cache stores it);
:meth:`EvalReport.from_dict` reads that JSON, and :meth:`EvalReport.to_dict` gives it back key for key, in
the same order, so a report stored by an earlier version (without some parts) is given back as stored.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from core.cache import json_arrays, json_value
from core.recs.paired import PairedReport


def _ordered(values: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """``values`` in the order of ``keys`` (the JSON's as read), then any others; keys never read and
    still None (parts an earlier version did not store) are left out."""
    out = {k: values[k] for k in keys if k in values}
    out.update((k, v) for k, v in values.items() if k not in out and (not keys or v is not None))
    return out


@dataclass
class SplitSummary:
    """The test window and its counts (:meth:`core.recs.split.Split.window` and ``counts``), the exclusion
    setting, and the validation window with its counts (``validation``, a dict of the same keys)."""
    cutoff: str | None = None
    end: str | None = None
    days: float | None = None
    exclude_bought: str | None = None  # "auto", "yes" or "no": EvalConfig.exclude_bought
    validation: dict | None = None
    train_purchases: int | None = None
    test_purchases: int | None = None
    test_customers: int | None = None
    window_customers: int | None = None  # who bought in the window; more than test_customers when they are a sample
    new_customers: int | None = None
    sparse_customers: int | None = None
    warm_customers: int | None = None
    cold_item_purchases: int | None = None
    warm_item_purchases: int | None = None
    cold_item_customers: int | None = None
    warm_item_customers: int | None = None
    repurchases: int | None = None
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the JSON's, in order

    def to_dict(self) -> dict:
        return _ordered({f.name: getattr(self, f.name) for f in fields(self) if f.name != "keys"}, self.keys)

    @classmethod
    def from_dict(cls, d: dict) -> "SplitSummary":
        known = {f.name for f in fields(cls)} - {"keys"}
        return cls(**{k: v for k, v in d.items() if k in known}, keys=tuple(d))


MODEL_CHOICES = ("exclude_bought", "id_only", "seeds", "params", "grid", "new_customer_path", "train_s",
                 "model_train_s", "verdict")


@dataclass
class ModelResult:
    """One model in an evaluation: ``metrics``, every number keyed as in the JSON (``recall_at_10``,
    ``recall_at_10_ci_low``, ``recall_at_10_new_customers``, ``recall_at_10_seed_min``,
    ``validation_recall_at_10_new_customers``...; None over no customers), and what was chosen for it."""
    metrics: dict[str, float | None] = field(default_factory=dict)
    exclude_bought: bool = False  # its lists leave out what the customer bought before (chosen on validation)
    id_only: bool = False
    seeds: list[int] | None = None  # the seeds it was fitted with; [] for a deterministic model
    params: dict | None = None  # its settings, chosen on the validation window
    grid: list[dict] | None = None  # each setting tried, with its validation recall
    new_customer_path: str | None = None  # "model", or the baseline serving its customers with no history
    train_s: float | None = None
    model_train_s: float | None = None
    verdict: str | None = None  # in plain words, against the baselines (core.recs.paired.verdict)
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the JSON's, in order

    def metric(self, key: str) -> float | None:
        """A number by its JSON key (e.g. ``recall_at_10``), None when it is not there."""
        return self.metrics.get(key)

    def to_dict(self) -> dict:
        return _ordered({**self.metrics, **{c: getattr(self, c) for c in MODEL_CHOICES}}, self.keys)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelResult":
        return cls({k: v for k, v in d.items() if k not in MODEL_CHOICES},
                   **{c: d[c] for c in MODEL_CHOICES if c in d}, keys=tuple(d))


@dataclass
class EvalReport:
    """What :func:`core.recs.evaluate.evaluate` measured: the split, the highest coverage its customers allow,
    the baseline serving new customers where a learned model's own list does no better
    (``new_customer_reference``: ``{"model", "params", "validation_recall_at_10_new_customers"}``), the paired
    comparisons (None in a report stored before they existed) and each model's :class:`ModelResult`."""
    split: SplitSummary
    models: dict[str, ModelResult]
    paired: PairedReport | None = None
    coverage_ceiling: float | None = None
    new_customer_reference: dict | None = None
    keys: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the JSON's, in order

    def to_dict(self) -> dict:
        """The JSON shape, key for key as :meth:`from_dict` read it (``python -m core evaluate`` prints it)."""
        return _ordered({"split": self.split.to_dict(), "coverage_ceiling": self.coverage_ceiling,
                         "new_customer_reference": self.new_customer_reference,
                         "paired": None if self.paired is None else self.paired.to_dict(),
                         "models": {n: m.to_dict() for n, m in self.models.items()}}, self.keys)

    @classmethod
    def from_dict(cls, d: dict) -> "EvalReport":
        return cls(SplitSummary.from_dict(d.get("split") or {}),
                   {n: ModelResult.from_dict(m) for n, m in (d.get("models") or {}).items()},
                   PairedReport.from_dict(d["paired"]) if d.get("paired") is not None else None,
                   d.get("coverage_ceiling"), d.get("new_customer_reference"), keys=tuple(d))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The report as the arrays of one artefact (JSON under the array name "json", as always stored)."""
        return json_arrays(self.to_dict(), "json")

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray] | None) -> "EvalReport | None":
        """The report :meth:`to_arrays` stored, or None for a missing artefact."""
        value = json_value(arrays, "json")
        return None if value is None else cls.from_dict(value)


# ---------------------------------------------------------------- the evaluation table

# What a reader compares the models on first, one column each beside the model's name, so that a 1400 px page
# holds them without sideways scrolling: recall@10 (the headline), its never-bought-products slice (the cold-start
# question: ID-only models score nothing there) and its new-customers slice, NDCG@10 and coverage@10.
MAIN_METRICS = ("recall_at_10", "recall_at_10_cold_items", "recall_at_10_new_customers", "ndcg_at_10",
                "coverage_at_10")
# The rest of each model's numbers (ModelResult.metrics keys, intervals aside), shown on request.
MORE_METRICS = ("map_at_12", "hit_rate_at_10", "recall_at_10_sparse_customers", "recall_at_10_warm_customers",
                "recall_at_10_warm_items", "sampled_recall_at_10", "never_bought_at_10")
