"""The new-customer rule (core.recs.newcustomer.recommend_new): session mode, else a query stands for products."""
from __future__ import annotations

import numpy as np

from core.recs.contract import SESSION, Recommender
from core.recs.newcustomer import recommend_new, session_mode

N = 10


class Ranked(Recommender):
    """Scores every history the same, row 9 best, and records the histories it is given; with ``session``,
    a session search returns rows 0, 1, 2..."""
    name = "ranked"

    def __init__(self, session: bool):
        self.capabilities = frozenset({SESSION}) if session else frozenset()
        self.histories, self.sessions = [], []

    def score_histories(self, histories, customer_ids=None):
        self.histories += [np.asarray(h).tolist() for h in histories]
        return np.tile(np.arange(N, dtype=np.float32), (len(histories), 1))

    def session_vector(self, image=None, text=None):
        self.sessions.append("photo" if image is not None else "text")
        return np.ones(2, np.float32)

    def search(self, vectors, k, exclude=None):
        return np.arange(k, dtype=np.int64)[None], np.zeros((1, k), np.float32)


def test_a_query_alone_goes_to_the_session_mode_where_there_is_one():
    model, query = Ranked(session=True), np.ones(2, np.float32)
    assert session_mode(model, [], query) and not session_mode(model, [3], query)
    assert not session_mode(model, [], None) and not session_mode(Ranked(session=False), [], query)
    rows, _ = recommend_new(model, [], 3, query, photo=True, nearest=lambda q: 1 / 0)  # never asked
    assert rows.tolist() == [[0, 1, 2]] and model.sessions == ["photo"] and model.histories == []
    recommend_new(model, [], 3, query)
    assert model.sessions == ["photo", "text"]


def test_otherwise_the_query_stands_for_its_nearest_products_and_liked_ones_are_not_recommended_back():
    model = Ranked(session=False)
    rows, _ = recommend_new(model, [9], 3, np.ones(2, np.float32), nearest=lambda q: [8, 7])
    assert model.histories == [[9, 8, 7]]  # liked first, then the stand-ins
    assert rows.tolist() == [[8, 7, 6]]  # the stand-ins may come back, the liked product not
    rows, _ = recommend_new(model, [9], 3, np.ones(2, np.float32), nearest=lambda q: [8, 7], exclude_nearest=True)
    assert rows.tolist() == [[6, 5, 4]]
    # a session model with liked products reads them, not its session mode
    session = Ranked(session=True)
    rows, _ = recommend_new(session, [9, 5], 2)
    assert session.histories == [[9, 5]] and session.sessions == [] and rows.tolist() == [[8, 7]]
