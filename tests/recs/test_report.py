"""The typed evaluation report."""
from __future__ import annotations

import json

from core.recs.report import EvalReport, ModelResult, SplitSummary


def test_a_report_stored_by_an_earlier_version_is_given_back_as_stored():
    """Before paired differences and seeds a result had fewer keys: the typed report neither adds nor drops any."""
    old = {"split": {"cutoff": "2020-04-01", "end": "2020-07-01", "train_purchases": 9, "test_customers": 2},
           "models": {"popularity": {"recall_at_10": 0.25, "exclude_bought": False, "id_only": False,
                                     "train_s": 0.1}}}
    report = EvalReport.from_dict(old)
    assert report.paired is None and report.models["popularity"].seeds is None
    assert json.dumps(report.to_dict()) == json.dumps(old)
    built = EvalReport(SplitSummary(cutoff="2020-04-01"), {"m": ModelResult({"recall_at_10": 0.5}, verdict="v")})
    assert built.to_dict()["models"]["m"]["recall_at_10"] == 0.5 and built.to_dict()["split"]["cutoff"] == "2020-04-01"
