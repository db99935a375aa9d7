"""The temporal split of purchases: train before a cutoff, test in a window after it, and the validation window
cut from before the cutoff, where choices are made; customers sliced by how much they bought before."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

SPARSE_MAX = 5  # a customer with 1..SPARSE_MAX purchases before the cutoff is sparse; more is warm


@dataclass(frozen=True)
class SplitConfig:
    # The H&M sample's purchases run to 2020-06-30: the last three months are the test window.
    cutoff: str = "2020-04-01"
    end: str = "2020-07-01"
    validation_days: int = 0  # 0: as long as the test window
    # Customers a window is measured on at most; past this, a seeded random sample of them with all their purchases in
    # the window (sample_customers). Metrics are means over customers, so a sample estimates them and the bootstrap
    # interval says how well; scoring every product for every customer of a window grows as n^2 when customers and
    # products both grow with the shop. The H&M sample's windows have about 500 customers.
    max_customers: int = 10_000



def _day(ts: pd.Timestamp) -> str:
    """"2020-04-01" for a midnight, else the full ISO time."""
    return ts.strftime("%Y-%m-%d") if ts == ts.normalize() else ts.isoformat()


def customer_slice(n_earlier: np.ndarray) -> np.ndarray:
    """(q,) str "new" / "sparse" / "warm" from each customer's number of purchases before the cutoff."""
    n_earlier = np.asarray(n_earlier)
    return np.where(n_earlier == 0, "new", np.where(n_earlier <= SPARSE_MAX, "sparse", "warm"))


@dataclass
class Split:
    """Purchases cut by time: ``train`` before ``cutoff``, ``test`` in ``[cutoff, end)``."""
    cutoff: pd.Timestamp
    end: pd.Timestamp
    train: pd.DataFrame  # purchases with timestamp < cutoff
    test: pd.DataFrame  # purchases with cutoff <= timestamp < end
    window_customers: int | None = None  # customers who bought in the window when ``test`` holds a sample of them

    def test_customers(self) -> np.ndarray:
        """(q,) str sorted ids of the customers with a purchase in the test window."""
        return np.unique(self.test["customer_id"].astype(str).to_numpy())

    def customer_slices(self) -> pd.Series:
        """"new" / "sparse" / "warm" per test customer (index: :meth:`test_customers`)."""
        customers = self.test_customers()
        earlier = self.train["customer_id"].astype(str).value_counts()
        return pd.Series(customer_slice(earlier.reindex(customers, fill_value=0).to_numpy()), index=customers)

    def cold_purchases(self) -> np.ndarray:
        """(len(test),) bool: the test purchase is of a product nobody bought before the cutoff."""
        return ~self.test["product_id"].isin(self.train["product_id"].unique()).to_numpy()

    def repurchases(self) -> np.ndarray:
        """(len(test),) bool: the customer had bought this product before the cutoff."""
        cols = ["customer_id", "product_id"]
        return pd.MultiIndex.from_frame(self.test[cols].astype(str)).isin(
            pd.MultiIndex.from_frame(self.train[cols].astype(str))).astype(bool)

    def counts(self) -> dict[str, int]:
        """Purchase rows and customers per part and slice; ``*_item_customers`` are the customers the
        cold / warm item recall averages over."""
        slices = self.customer_slices().to_numpy()
        cold = self.cold_purchases()
        customers = self.test["customer_id"].astype(str).to_numpy()
        return {
            "train_purchases": len(self.train),
            "test_purchases": len(self.test),
            "test_customers": len(slices),
            "window_customers": len(slices) if self.window_customers is None else self.window_customers,
            "new_customers": int((slices == "new").sum()),
            "sparse_customers": int((slices == "sparse").sum()),
            "warm_customers": int((slices == "warm").sum()),
            "cold_item_purchases": int(cold.sum()),
            "warm_item_purchases": int((~cold).sum()),
            "cold_item_customers": len(np.unique(customers[cold])),
            "warm_item_customers": len(np.unique(customers[~cold])),
            "repurchases": int(self.repurchases().sum()),
        }

    def window(self) -> dict:
        return {"cutoff": _day(self.cutoff), "end": _day(self.end),
                "days": round((self.end - self.cutoff) / pd.Timedelta(days=1), 3)}


def temporal_split(purchases: pd.DataFrame, cutoff, end) -> Split:
    """Purchases before ``cutoff`` (train) and in ``[cutoff, end)`` (test); undated purchases are in neither."""
    cutoff, end = pd.Timestamp(cutoff), pd.Timestamp(end)
    if not cutoff < end:
        raise ValueError(f"the test window is empty: cutoff {cutoff} is not before end {end}")
    t = purchases["timestamp"]
    return Split(cutoff, end, purchases[t < cutoff].reset_index(drop=True),
                 purchases[(t >= cutoff) & (t < end)].reset_index(drop=True))


def sample_customers(split: Split, max_customers: int, seed: int = 0) -> Split:
    """``split`` with its test purchases those of at most ``max_customers`` of its test customers, drawn at random
    (``seed``) when there are more (0: all); ``window_customers`` then says how many there were."""
    customers = split.test_customers()
    if not 0 < max_customers < len(customers):
        return split
    kept = np.random.default_rng(seed).choice(customers, max_customers, replace=False)
    test = split.test[split.test["customer_id"].astype(str).isin(kept)].reset_index(drop=True)
    return dataclasses.replace(split, test=test, window_customers=len(customers))


def validation_split(purchases: pd.DataFrame, cfg: SplitConfig) -> Split:
    """The split used for choices: a window of ``cfg.validation_days`` (0: the test window's length)
    ending at ``cfg.cutoff``, its train everything before that window. It never sees the test window."""
    cutoff = pd.Timestamp(cfg.cutoff)
    length = pd.Timedelta(days=cfg.validation_days) if cfg.validation_days else pd.Timestamp(cfg.end) - cutoff
    return temporal_split(purchases, cutoff - length, cutoff)
