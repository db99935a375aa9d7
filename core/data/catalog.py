"""The in-memory catalogue (products, customers, purchases): its schema, validation report and sentences.

Schema, whatever the source:

``products``  index ``product_id`` (str), one row per product:
    ``title``        str, short product name
    ``description``  str, free text, "" where the source has none
    ``image_path``   str, absolute path of the photo, "" where it is missing
    ``group_id``     str, products sharing it are variants of one product
                     (H&M ``product_code``); equals ``product_id`` otherwise
    ``sentence``     str, readable product sentence used by every text model
    attribute columns, str, "" where unknown. The H&M loader names them
    ``product_type``, ``product_group``, ``colour``, ``pattern``, ``section``,
    ``department``, ``index_group``, ``garment_group``; the generic loader
    renames the shop's columns it recognises (:data:`core.data.roles.ROLE_SYNONYMS`, columns.json)
    to these and keeps the others under their own names.
``customers`` index ``customer_id`` (str), attribute columns (str).
``purchases`` columns ``customer_id`` (str), ``product_id`` (str),
    ``timestamp`` (datetime64[ns], NaT where unknown), ``price`` (float, NaN
    where unknown); every ``product_id`` is in ``products``.

Bad input never stops a load that can safely go on: problems are counted in a
:class:`ValidationReport`. What cannot be loaded at all raises
:class:`CatalogError` naming the file and the fix.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

N_EXAMPLES = 5

# Phrases that read better in a sentence than H&M's pattern labels.
PATTERN_PHRASES = {
    "solid": "solid",
    "stripe": "striped",
    "check": "checked",
    "dot": "dotted",
    "all over pattern": "all-over patterned",
    "denim": "denim",
    "melange": "melange",
}
# Zero-shot prompts for a pattern (given as its phrase) and a product type, shared by evaluation and naming.
PATTERN_PROMPT = "a photo of a {} garment"
TYPE_PROMPT = "a photo of a {}"


def pattern_phrase(label: str) -> str:
    """A pattern label as it reads in a sentence: "Stripe" -> "striped"; unknown labels lower-cased."""
    return PATTERN_PHRASES.get(label.lower(), label.lower())


class CatalogError(Exception):
    """A catalogue that cannot be loaded at all; the message names the file and the fix."""


@dataclass
class Issue:
    file: str
    problem: str
    count: int
    examples: list[str]
    action: str  # what the loader did about it: "skipped", "kept the first", ...


@dataclass
class ValidationReport:
    issues: list[Issue] = field(default_factory=list)

    def add(self, file: str, problem: str, examples: list, action: str, count: int | None = None) -> None:
        count = len(examples) if count is None else count
        if count:
            self.issues.append(Issue(file, problem, int(count), [str(e) for e in list(examples)[:N_EXAMPLES]], action))

    @property
    def ok(self) -> bool:
        return not self.issues

    def extend(self, other: "ValidationReport") -> None:
        self.issues.extend(other.issues)

    def to_frame(self) -> pd.DataFrame:
        rows = [dataclasses.asdict(i) | {"examples": ", ".join(i.examples)} for i in self.issues]
        return pd.DataFrame(rows, columns=["file", "problem", "count", "action", "examples"])

    def summary(self) -> str:
        if self.ok:
            return "validation: no problems found"
        lines = [f"validation: {len(self.issues)} kind(s) of problem"]
        for i in self.issues:
            lines.append(f"  {i.file}: {i.problem}: {i.count} ({i.action}); e.g. {', '.join(i.examples)}")
        return "\n".join(lines)


@dataclass
class Catalog:
    name: str
    source: str  # directory it was read from, or "synthetic:<n>:<seed>"
    products: pd.DataFrame
    customers: pd.DataFrame
    purchases: pd.DataFrame
    report: ValidationReport = field(default_factory=ValidationReport)
    simulated: bool = False  # customers and purchases are simulated, not observed

    @property
    def attribute_columns(self) -> list[str]:
        fixed = {"title", "description", "image_path", "group_id", "sentence"}
        return [c for c in self.products.columns if c not in fixed]

    def counts(self) -> dict[str, int]:
        return {
            "products": len(self.products),
            "customers": len(self.customers),
            "purchases": len(self.purchases),
            "missing_images": int((self.products["image_path"] == "").sum()),
        }

    def never_bought(self) -> pd.Index:
        """The ids of the products no purchase names, in catalogue order: what a purchase-trained model
        knows nothing about (9,470 of the 24,717 products of the H&M sample)."""
        return self.products.index[~self.products.index.isin(self.purchases["product_id"])]

    def head(self, limit: int | None) -> "Catalog":
        """The first ``limit`` products (file order) and the purchases of them."""
        if limit is None or limit >= len(self.products):
            return self
        products = self.products.iloc[:limit]
        purchases = self.purchases[self.purchases["product_id"].isin(products.index)].reset_index(drop=True)
        customers = self.customers[self.customers.index.isin(purchases["customer_id"])]
        return dataclasses.replace(self, name=f"{self.name} (first {limit})", products=products,
                                   customers=customers, purchases=purchases)


# ---------------------------------------------------------------- sentences

# Attributes of a shop's export that say nothing of what the product is: left out of its sentence.
NOT_WORDS = frozenset({"image_url", "more_images", "link", "price", "currency", "availability", "status"})


def product_sentences(products: pd.DataFrame) -> list[str]:
    """One readable sentence per product from its metadata, e.g.
    "Strap top: a black solid vest top, Womens Everyday Basics, Ladieswear."
    Known attributes (colour, pattern, product_type, section, index_group) read as a
    phrase; any other attribute columns of a generic catalogue follow as "name: value".
    """
    known = ["colour", "pattern", "product_type", "section", "index_group"]
    skip = set(known) | {"title", "description", "image_path", "group_id", "sentence",
                         "product_group", "department", "garment_group"} | NOT_WORDS
    extra = [c for c in products.columns if c not in skip]
    cols = {c: products[c].tolist() if c in products else [""] * len(products)
            for c in known + ["title", "description"] + extra}
    out = []
    for i in range(len(products)):
        colour = cols["colour"][i].lower()
        pattern = pattern_phrase(cols["pattern"][i])
        kind = cols["product_type"][i].lower() or "product"
        noun = " ".join(w for w in (colour, pattern, kind) if w)
        article = "an" if noun[:1] in "aeiou" else "a"
        where = ", ".join(w for w in (cols["section"][i], cols["index_group"][i]) if w)
        s = f"{cols['title'][i]}: {article} {noun}" + (f", {where}" if where else "") + "."
        attrs = "; ".join(f"{c.replace('_', ' ')}: {cols[c][i]}" for c in extra if cols[c][i])
        if attrs:
            s += f" {attrs}."
        desc = cols["description"][i].strip()
        if desc:
            s += f" {desc}"
        out.append(s)
    return out


def filter_products(products: pd.DataFrame, filters: dict[str, list[str]] | None = None,
                    text: str = "") -> pd.DataFrame:
    """Products whose attributes are among the chosen values (an empty choice keeps all) and whose
    id, title or sentence contains every word of ``text`` (case-insensitive)."""
    mask = np.ones(len(products), dtype=bool)
    for col, values in (filters or {}).items():
        if values:
            mask &= products[col].isin(values).to_numpy()
    words = text.lower().split()
    if words:
        haystack = (products.index.to_series() + " " + products["title"] + " " + products["sentence"]).str.lower()
        for w in words:
            mask &= haystack.str.contains(w, regex=False).to_numpy()
    return products[mask]
