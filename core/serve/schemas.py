"""The HTTP API's request bodies and form fields, and their limits."""
from __future__ import annotations

import json
import re
from typing import Literal

import numpy as np
from fastapi import HTTPException
from pydantic import BaseModel, Field, field_validator

from core.serve.errors import echo, listed

MAX_K = 100
MAX_TEXT = 500  # characters of a text query
MAX_IDS = 1000  # products per /embeddings call
PRODUCT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")

Kind = Literal["image", "text", "hybrid", "texture"]


class TextQuery(BaseModel):
    text: str = Field(description="what to look for, e.g. 'red striped summer dress'", max_length=MAX_TEXT)
    k: int = Field(10, ge=1, le=MAX_K, strict=True)  # strict: true is not 1
    kind: Kind = Field("hybrid", description="the embedding space searched")

    @field_validator("text")
    @classmethod
    def _not_empty(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("empty query: type a few words, e.g. 'red striped dress'")
        return text.strip()


class NewCustomer(BaseModel):
    liked: list[str] = Field(default_factory=list, max_length=MAX_IDS, description="ids of products they like")
    text: str | None = Field(None, max_length=MAX_TEXT, description="what they are looking for, in words")
    k: int = Field(12, ge=1, le=MAX_K, strict=True)
    model: str | None = Field(None, description="a served recommender; default the version's first")

    @field_validator("text")
    @classmethod
    def _strip(cls, text: str | None) -> str | None:
        return text.strip() or None if text is not None else None


class EmbeddingQuery(BaseModel):
    ids: list[str] = Field(min_length=1, max_length=MAX_IDS)
    kind: str = Field("hybrid", description="an embedding kind (image, text, hybrid, texture) or a served "
                                            "recommender's name (its item vectors)")


def _not_a_number(name: str):
    raise ValueError(f"{name} is not a number JSON allows: give a text value")


def parse_attributes(text: str, columns: list[str]) -> dict[str, str]:
    """The attributes form field: a JSON object of the catalogue's attribute columns to short texts or finite
    numbers, as strings; 422 else (NaN and +-Infinity too, which Python's JSON reads, and true/false)."""
    try:
        value = json.loads(text or "{}", parse_constant=_not_a_number)
    except RecursionError:
        raise HTTPException(422, 'attributes is nested too deeply: give a flat JSON object, e.g. {"colour": '
                                 '"Black"}') from None
    except ValueError as e:
        raise HTTPException(422, f"attributes is not JSON: {echo(e, 200)}") from None
    if not isinstance(value, dict):
        raise HTTPException(422, 'attributes must be a JSON object, e.g. {"colour": "Black"}')
    unknown = [k for k in value if k not in columns]
    if unknown:
        raise HTTPException(422, f"unknown attribute(s) {listed(unknown)}; this catalogue has "
                                 f"{', '.join(columns)}")
    bad = [k for k, v in value.items() if not isinstance(v, (str, int, float)) or isinstance(v, bool)
           or (isinstance(v, float) and not np.isfinite(v)) or len(str(v)) > 200]  # 1e400 reads as inf
    if bad:
        raise HTTPException(422, f"attribute(s) {', '.join(bad)}: give each a short text value")
    return {k: str(v) for k, v in value.items()}
