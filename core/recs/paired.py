"""Paired comparisons of recommenders over the same customers: bootstrap intervals of per-customer differences
(:func:`paired_difference`, :class:`PairedReport`) and the verdicts they give in plain words (:func:`verdict`)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from core.recs.metrics import bootstrap_ci


@dataclass(frozen=True)
class PairedDifference:
    """A model's mean per-customer difference from a reference model over the same customers (``diff``),
    its percentile bootstrap interval (``low``, ``high``; the customers resampled with replacement, each
    resample the same customers for both models) and the number of customers ``n``; None where there
    are no customers."""
    diff: float | None
    low: float | None
    high: float | None
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PairedDifference":
        return cls(d["diff"], d["low"], d["high"], int(d["n"]))

    @property
    def better(self) -> bool:
        """The interval lies above 0: the model is better, beyond the customers' resampling noise."""
        return self.low is not None and self.low > 0

    @property
    def worse(self) -> bool:
        return self.high is not None and self.high < 0


def paired_difference(values: np.ndarray, reference: np.ndarray, n_bootstrap: int = 1000, seed: int = 0,
                      level: float = 0.95) -> PairedDifference:
    """Mean of ``values - reference`` ((q,) float per customer, the same customers in the same order;
    a NaN in either marks a customer outside the slice, dropped from both) and the percentile bootstrap
    interval of that mean (``n_bootstrap`` resamples of the customers, each shared by both arrays)."""
    d = np.asarray(values, dtype=np.float64) - np.asarray(reference, dtype=np.float64)
    if d.shape != np.shape(reference):
        raise ValueError(f"{np.shape(values)} values against {np.shape(reference)} reference values")
    d = d[~np.isnan(d)]
    if not len(d):
        return PairedDifference(None, None, None, 0)
    low, high = bootstrap_ci(d, n_bootstrap, seed, level)
    return PairedDifference(float(d.mean()), low, high, len(d))


def paired_keys(k: int = 10) -> tuple[str, ...]:
    """The metrics compared in pairs: Recall@k overall, per customer slice and on cold items."""
    return (f"recall_at_{k}", f"recall_at_{k}_new_customers", f"recall_at_{k}_sparse_customers",
            f"recall_at_{k}_warm_customers", f"recall_at_{k}_cold_items")


@dataclass
class PairedReport:
    """Every model against the best baseline (``reference``: the highest validation Recall@k, chosen on
    the validation window, never on the test) and, for the verdicts, against every baseline;
    ``models[name][metric]`` and ``against[name][baseline][metric]`` are :class:`PairedDifference`,
    with the metrics of :func:`paired_keys`. A model is not compared with itself."""
    reference: str | None
    metric: str
    models: dict[str, dict[str, PairedDifference]]
    against: dict[str, dict[str, dict[str, PairedDifference]]]

    def to_dict(self) -> dict:
        """The JSON shape: ``{"reference", "metric", "models": {name: {metric: {"diff", "low", "high",
        "n"}}}, "against_each_baseline": {name: {baseline: {metric: {...}}}}}``."""
        return {"reference": self.reference, "metric": self.metric,
                "models": {n: {key: d.to_dict() for key, d in ds.items()} for n, ds in self.models.items()},
                "against_each_baseline": {n: {b: {key: d.to_dict() for key, d in ds.items()}
                                              for b, ds in per.items()} for n, per in self.against.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "PairedReport":
        diffs = lambda ds: {key: PairedDifference.from_dict(v) for key, v in ds.items()}  # noqa: E731
        against = d.get("against_each_baseline", {})
        return cls(d["reference"], d["metric"], {n: diffs(ds) for n, ds in d["models"].items()},
                   {n: {b: diffs(ds) for b, ds in per.items()} for n, per in against.items()})


def paired_report(values: dict[str, dict[str, np.ndarray]], baselines: Sequence[str], reference: str | None,
                  k: int = 10, n_bootstrap: int = 1000, seed: int = 0) -> PairedReport:
    """Paired differences of every model in ``values`` (name -> :func:`paired_values`) from the
    ``reference`` and from each of ``baselines`` (names in ``values``); the same bootstrap seed for
    every pair, so every comparison resamples the same customers."""
    def compare(name: str, other: str) -> dict[str, PairedDifference]:
        return {key: paired_difference(values[name][key], values[other][key], n_bootstrap, seed)
                for key in paired_keys(k)}
    models = {n: compare(n, reference) for n in values if reference is not None and n != reference}
    against = {n: {b: compare(n, b) for b in baselines if b != n} for n in values}
    return PairedReport(reference, f"recall_at_{k}", models, against)


# The slices of paired_keys, for people: the suffix of each key ("recall_at_10" + suffix) and whom it measures.
SLICES = {"": "all test customers", "_new_customers": "new customers (no purchase before)",
          "_sparse_customers": "sparse customers (1–5 purchases)", "_warm_customers": "warm customers (more)",
          "_cold_items": "never-bought products"}


def slice_names(k: int = 10) -> dict[str, str]:
    """Each of :func:`paired_keys` and whom it measures, in words."""
    return {f"recall_at_{k}{suffix}": words for suffix, words in SLICES.items()}


ASPECTS = {"": "overall", "_cold_items": "on new products", "_new_customers": "for new customers",
           "_sparse_customers": "for sparse customers", "_warm_customers": "for warm customers"}


def _aspect_words(better: list[str], worse: list[str], unclear: list[str]) -> str:
    """How a model compares with the baselines on one aspect, naming the shorter list."""
    n = len(better) + len(worse) + len(unclear)
    others = lambda k: "the other one" if k == 1 else f"the other {k}"  # noqa: E731
    if len(better) == n:
        return "better than every baseline"
    if worse:
        return "worse than every baseline" if len(worse) == n else f"worse than {', '.join(worse)}"
    if len(unclear) == n:
        return "no clear difference from any baseline"
    if len(unclear) <= len(better):
        return f"no clear difference from {', '.join(unclear)} but better than {others(len(better))}"
    return f"better than {', '.join(better)} but no clear difference from {others(len(unclear))}"


def verdict(report: PairedReport, name: str) -> str:
    """A model's verdict in plain words from the paired intervals of an evaluation (its ``report``), per
    aspect (overall, new products, new, sparse and warm customers), from its difference from each baseline:
    better where the interval lies above 0, worse where it lies below 0, else no clear difference. "better
    than every baseline"; "worse than X" naming the baselines it loses to; "no clear difference from any
    baseline"; or, when it beats some and ties the others, the shorter list named ("better than
    new_arrivals but no clear difference from the other 8"). Aspects with the same words are joined, e.g.
    "better than every baseline on new products; no clear difference from any baseline for new customers"."""
    per = report.against.get(name, {})
    if not per:
        return "not compared: no other baseline in this evaluation"
    base = report.metric
    clauses: dict[str, list[str]] = {}
    for suffix, aspect in ASPECTS.items():
        diffs = {b: ds[base + suffix] for b, ds in per.items() if ds[base + suffix].n > 0}
        if not diffs:
            continue
        better = [b for b, d in diffs.items() if d.better]
        worse = [b for b, d in diffs.items() if d.worse]
        unclear = [b for b, d in diffs.items() if not d.better and not d.worse]
        clauses.setdefault(_aspect_words(better, worse, unclear), []).append(aspect)
    listed = lambda xs: xs[0] if len(xs) == 1 else f"{', '.join(xs[:-1])} and {xs[-1]}"  # noqa: E731
    return "; ".join(f"{words} {listed(aspects)}" for words, aspects in clauses.items()) or \
        "not compared: no test customers"
