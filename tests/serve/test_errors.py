"""Error messages quote a client's input bounded: so many characters, so many items, always encodable."""
import math

from core.serve.errors import ECHO_ITEMS, echo, listed, validation_errors


def test_echo_keeps_short_text_and_cuts_long_text_saying_how_long():
    assert echo("red dress") == "red dress"
    assert echo("x" * 100, 10) == "xxxxxxxxxx... (100 characters)"
    assert echo("\ud800 lone surrogate").encode("utf-8")  # encodable, whatever came in
    assert echo(ValueError("bad")) == "bad"


def test_listed_quotes_the_first_items_and_counts_the_rest():
    assert listed(["a", "b"]) == "'a', 'b'"
    assert listed([str(i) for i in range(13)], 2) == "'0', '1' and 11 more"


def test_validation_errors_stand_in_for_big_or_unjsonable_inputs():
    errors = [{"type": "t", "loc": ("body", "ids"), "msg": "m", "input": list(range(5000))},
              {"type": "t", "loc": ("body", "k"), "msg": "m", "input": math.nan},
              {"type": "t", "loc": ("body", "text"), "msg": "m" * 400, "input": "y" * 500}]
    out = validation_errors(errors * 5)
    assert len(out) == ECHO_ITEMS + 1 and out[-1]["msg"] == f"and {15 - ECHO_ITEMS} more errors"
    assert out[0]["input"] == "(a list of 5,000 items)" and out[0]["loc"] == ["body", "ids"]
    assert out[1]["input"] == "nan"
    assert out[2]["input"].endswith("(500 characters)") and len(out[2]["msg"]) < 330
