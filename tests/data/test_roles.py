"""Tests of column roles: synonyms, priority, explicit mappings and their errors."""
from __future__ import annotations

import pytest

from core.data.catalog import CatalogError
from core.data.roles import ROLE_SYNONYMS, column_roles
from tests.data.files import STYLES_HEADER


def test_column_roles_of_styles_csv_headers():
    assert column_roles(STYLES_HEADER.split(",")) == {
        "productDisplayName": "title", "baseColour": "colour", "articleType": "product_type",
        "subCategory": "product_group", "masterCategory": "index_group"}


def test_column_roles_ignore_case_and_separators_and_follow_priority():
    assert column_roles(["Base Colour", "article-type", "PRODUCT_NAME", "Print", "desc"]) == {
        "PRODUCT_NAME": "title", "desc": "description", "Base Colour": "colour", "Print": "pattern",
        "article-type": "product_type"}
    # two columns for one role: the earlier synonym wins, the role's own name first
    assert column_roles(["category", "articleType", "color", "colour"]) == {"colour": "colour",
                                                                          "articleType": "product_type"}


def test_role_synonyms_belong_to_one_role_each_and_start_with_the_role():
    plain = [s.replace("_", "") for synonyms in ROLE_SYNONYMS.values() for s in synonyms]
    assert len(plain) == len(set(plain))
    assert all(synonyms[0] == role for role, synonyms in ROLE_SYNONYMS.items())
    assert "gender" not in plain


def test_explicit_mapping_wins_over_synonyms():
    roles = column_roles(STYLES_HEADER.split(","), {"product_type": "subCategory", "section": "gender"})
    assert roles["subCategory"] == "product_type" and roles["gender"] == "section"
    assert "articleType" not in roles  # its role was given to subCategory
    assert roles["baseColour"] == "colour"


@pytest.mark.parametrize("explicit, words", [
    ({"colr": "baseColour"}, ["unknown role 'colr'", "baseColour", "did you mean colour", "product_type"]),
    ({"pattern": "print_type"}, ["'print_type'", "role pattern", "not in the file", "baseColour"]),
    ({"title": "gender", "section": "gender"}, ["'gender'", "two roles", "title", "section"]),
], ids=["unknown-role", "missing-column", "column-given-twice"])
def test_bad_explicit_mapping_raises_a_clear_error(explicit, words):
    with pytest.raises(CatalogError) as e:
        column_roles(STYLES_HEADER.split(","), explicit)
    for w in words:
        assert w in str(e.value), (w, str(e.value))
