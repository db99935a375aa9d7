"""The attributes form field of POST /products: a flat JSON object of known columns to short values."""
import pytest
from fastapi import HTTPException

from core.serve.schemas import PRODUCT_ID, parse_attributes

COLUMNS = ["colour", "pattern"]


def test_attributes_become_strings():
    assert parse_attributes('{"colour": "Black", "pattern": 3}', COLUMNS) == {"colour": "Black", "pattern": "3"}
    assert parse_attributes("", COLUMNS) == {}


@pytest.mark.parametrize("text", ['{"size": "M"}', '["colour"]', "{not json", '{"colour": NaN}',
                                  '{"colour": true}', '{"colour": 1e400}', '{"colour": "' + "x" * 201 + '"}',
                                  "[" * 100_000])
def test_bad_attributes_are_422(text):
    with pytest.raises(HTTPException) as e:
        parse_attributes(text, COLUMNS)
    assert e.value.status_code == 422


def test_product_ids():
    assert PRODUCT_ID.match("0108775015") and PRODUCT_ID.match("new-1.a_b")
    assert not PRODUCT_ID.match("-x") and not PRODUCT_ID.match("a/b") and not PRODUCT_ID.match("x" * 65)
