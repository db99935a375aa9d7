"""The in-memory catalogue (products, customers, purchases) and its loaders.

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
    renames the shop's columns it recognises (:data:`ROLE_SYNONYMS`, columns.json)
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

import codecs
import csv
import dataclasses
import difflib
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

N_EXAMPLES = 5

# H&M column -> Atelier column. Columns not listed are dropped.
HM_PRODUCT_COLUMNS = {
    "prod_name": "title",
    "detail_desc": "description",
    "product_code": "group_id",
    "product_type_name": "product_type",
    "product_group_name": "product_group",
    "colour_group_name": "colour",
    "graphical_appearance_name": "pattern",
    "section_name": "section",
    "department_name": "department",
    "index_group_name": "index_group",
    "garment_group_name": "garment_group",
}
HM_CUSTOMER_COLUMNS = ["FN", "Active", "club_member_status", "fashion_news_frequency", "age", "postal_code"]
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

def product_sentences(products: pd.DataFrame) -> list[str]:
    """One readable sentence per product from its metadata, e.g.
    "Strap top: a black solid vest top, Womens Everyday Basics, Ladieswear."
    Known attributes (colour, pattern, product_type, section, index_group) read as a
    phrase; any other attribute columns of a generic catalogue follow as "name: value".
    """
    known = ["colour", "pattern", "product_type", "section", "index_group"]
    skip = set(known) | {"title", "description", "image_path", "group_id", "sentence",
                         "product_group", "department", "garment_group"}
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


# ---------------------------------------------------------------- column roles

# Atelier's product columns (roles) and the shop column names read as each, case and separators
# ignored ("baseColour" = "base_colour" = "Base Colour"). Order is priority: where two columns of
# one file match a role, the one matching the earlier synonym takes it (the role's own name comes
# first) and the other keeps its own name as an attribute. A name belongs to one role only. Left
# out on purpose: "gender" (who a product is for, not a shop section) and other names too vague
# to guess; map those in columns.json.
ROLE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "title": ("title", "product_display_name", "product_name", "item_name", "name"),
    "description": ("description", "product_description", "detail_desc", "details", "desc"),
    "colour": ("colour", "color", "base_colour", "base_color", "colour_name", "color_name"),
    "pattern": ("pattern", "print", "graphical_appearance"),
    "product_type": ("product_type", "article_type", "type", "category"),
    "product_group": ("product_group", "sub_category"),
    "section": ("section",),
    "department": ("department", "dept"),
    "index_group": ("index_group", "master_category"),
    "garment_group": ("garment_group",),
    "group_id": ("group_id", "parent_id"),
    "image": ("image", "image_path", "image_file", "photo"),
}
COLUMNS_FILE = "columns.json"  # beside items.csv: {"role": "shop column", ...}


def _plain(name: str) -> str:
    """A column name without case or separators: "baseColour", "base_colour" -> "basecolour"."""
    return re.sub(r"[\W_]+", "", name).casefold()


_SYNONYM_ROLE = {_plain(s): role for role, synonyms in ROLE_SYNONYMS.items() for s in synonyms}


def column_roles(columns: list[str], explicit: dict[str, str] | None = None) -> dict[str, str]:
    """The Atelier role each of a shop's ``columns`` is read as: ``{shop column: role}``, columns
    without a role left out (a column already named as its role maps to itself).

    ``explicit`` (role -> shop column, from columns.json or ``columns=``) wins; every other role
    goes to the first column (file order) matching its earliest synonym in :data:`ROLE_SYNONYMS`.
    Raises :class:`CatalogError` for an unknown role, a column not in ``columns``, or one column
    given two roles.
    """
    columns = list(columns)
    explicit = dict(explicit or {})
    roles = {}
    for role, col in explicit.items():
        if role not in ROLE_SYNONYMS:
            close = difflib.get_close_matches(str(role), list(ROLE_SYNONYMS), 1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise CatalogError(f"unknown role '{role}' (given the column '{col}'){hint}; "
                               f"the roles are: {', '.join(ROLE_SYNONYMS)}")
        if col not in columns:
            raise CatalogError(f"the column '{col}' (given for the role {role}) is not in the file; "
                               f"its columns are: {', '.join(columns)}")
        if col in roles:
            raise CatalogError(f"the column '{col}' is given two roles, {roles[col]} and {role}; "
                               "a column can be read as one role only")
        roles[col] = role
    plain = {c: _plain(c) for c in columns}
    for role, synonyms in ROLE_SYNONYMS.items():
        if role in explicit:
            continue
        free = [c for c in columns if c not in roles]
        match = next((c for s in map(_plain, synonyms) for c in free if plain[c] == s), None)
        if match is not None:
            roles[match] = role
    return roles


def _explicit_roles(root: Path, columns: dict[str, str] | None) -> tuple[dict[str, str], str]:
    """The user's role -> column mapping and where it came from: ``columns`` when given (it
    replaces the file), else columns.json beside items.csv, else none."""
    if columns is not None:
        return dict(columns), "columns="
    path = root / COLUMNS_FILE
    if not path.is_file():
        return {}, ""
    example = '{"colour": "baseColour", "product_type": "articleType"}'
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CatalogError(f"{path}: not valid JSON ({e}). Fix: write role -> column pairs, e.g. {example}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise CatalogError(f"{path}: expected an object of role -> column name, got {json.dumps(mapping)[:80]}. "
                           f"Fix: write role -> column pairs, e.g. {example}")
    return mapping, COLUMNS_FILE


def _apply_roles(df: pd.DataFrame, explicit: dict[str, str], source: str, file: str,
                 report: ValidationReport) -> pd.DataFrame:
    """``df`` with its columns renamed to the roles :func:`column_roles` gives them; reports the
    renames and the columns left out because another column took their role."""
    roles = column_roles(list(df.columns), explicit)
    taken = {role: col for col, role in roles.items()}
    left = {c: _SYNONYM_ROLE[_plain(c)] for c in df.columns if c not in roles and _plain(c) in _SYNONYM_ROLE}
    aside = {c: f"shop_{c}" for c in df.columns if c not in roles and c in taken}  # its name is a role taken
    df = df.rename(columns={c: r for c, r in roles.items() if c != r} | aside)
    given = set(explicit.values())
    report.add(file, "columns mapped to roles",
               [f"'{c}' read as {r}" + (f" ({source})" if c in given else "") for c, r in roles.items() if c != r],
               "renamed")
    report.add(file, "columns matching a role another column took",
               [f"'{c}' kept " + (f"as {aside[c]}" if c in aside else "its own name") + f" ({r} read from '{taken[r]}')"
                for c, r in left.items()],
               "kept as attributes")
    return df


# ---------------------------------------------------------------- CSV reading

HM_GUIDE = "see the README section 'Data'"
GENERIC_GUIDE = "see the README section 'Your own catalogue'"


def _check_text(path: Path, data: bytes, guide: str) -> None:
    """Raise CatalogError when ``data`` is plainly no CSV: empty, UTF-16 or binary."""
    if not data or data.isspace():
        raise CatalogError(f"{path}: empty file. Fix: export the table again, header line first; {guide}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise CatalogError(f"{path}: not a CSV: UTF-16 text. Fix: save it as 'CSV UTF-8'; {guide}")
    if data.find(b"\x00", 0, 1 << 16) >= 0:
        raise CatalogError(f"{path}: not a CSV: binary data (NUL bytes near the start). "
                           f"Fix: point at the exported .csv file itself; {guide}")


def _decode(path: Path, data: bytes, guide: str) -> str:
    """``data`` as text (UTF-8, a leading byte-order mark dropped); CatalogError naming the line otherwise."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise CatalogError(f"{path}: not a CSV: not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}). "
                           f"Fix: save it as 'CSV UTF-8'; {guide}") from None


def _one_full_row_per_line(data: bytes, n_rows: int, n_fields: int) -> bool:
    """Whether the header and the ``n_rows`` rows pandas read from ``data`` are one line each, of
    ``n_fields`` fields each. Told by counting, not parsing: a file's commas are its delimiters
    plus those inside quoted fields, so where quotes pair plainly within a line (one opens a field,
    closes it, or is doubled) every line is full iff the delimiters number (n_rows + 1) * (n_fields - 1).
    Anything less plain (a quote inside a word, a field over several lines, a blank line) gives False."""
    b = np.frombuffer(data, np.uint8)
    newlines = np.flatnonzero(b == ord("\n"))
    if len(newlines) + (b[-1] != ord("\n")) != n_rows + 1:
        return False
    quotes = np.flatnonzero(b == ord('"'))
    if len(quotes) % 2:
        return False
    opens, closes = quotes[0::2], quotes[1::2]
    before = b[np.maximum(opens - 1, 0)]  # the quote itself at the start of the file
    after = b[np.minimum(closes + 1, len(b) - 1)]  # the quote itself at the end
    if not (np.isin(before, list(b',\n"')).all() and np.isin(after, list(b',\r\n"')).all()):
        return False
    if (np.searchsorted(newlines, opens) != np.searchsorted(newlines, closes)).any():
        return False
    commas = np.flatnonzero(b == ord(","))
    quoted = int((np.searchsorted(commas, closes) - np.searchsorted(commas, opens)).sum())
    return len(commas) - quoted == (n_rows + 1) * (n_fields - 1)


def _read_fast(data: bytes) -> pd.DataFrame | None:
    """``data`` read by pandas' C parser, or None unless every row is one line with the header's
    number of fields. The C parser would otherwise, without a word, pad a short row, take the
    first column as the index when the first row is one field longer, or read the lines a stray
    quote runs over as one field; such files go to :func:`_read_by_record`."""
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    if not isinstance(df.index, pd.RangeIndex) or not _one_full_row_per_line(data, len(df), len(df.columns)):
        return None
    return df


class _Lines:
    """Physical lines handed to ``csv.reader`` one at a time; ``pos`` is the next one to hand out,
    ``ran_out`` says the reader asked for one past the end (a quote left open at the end of the file)."""

    def __init__(self, lines: list[str], pos: int):
        self.lines, self.pos, self.ran_out = lines, pos, False

    def __iter__(self) -> "_Lines":
        return self

    def __next__(self) -> str:
        if self.pos == len(self.lines):
            self.ran_out = True
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1]


def _read_by_record(text: str, path: Path, guide: str) -> tuple[pd.DataFrame, list[str]]:
    """Rows of ``text`` with the header's number of fields, read one CSV record at a time, and the
    broken ones ("line 7: unterminated quote, ..."). After a broken record (wrong number of fields,
    text after a closing quote, a quote open to the end of the file) reading starts again on the
    line after its first, so the good rows a stray quote ran over are kept; a quoted field with
    line breaks that closes reads as one field."""
    lines = list(io.StringIO(text, newline=""))  # splits at \n, \r\n and \r, like pandas
    header, header_text = None, ""
    rows, row_lines, broken = [], [], []
    source = _Lines(lines, 0)
    reader = csv.reader(source, strict=True)
    while True:
        start = source.pos
        try:
            record, problem = next(reader), ""
        except StopIteration:
            break
        except csv.Error as e:  # text after a closing quote; a quoted field past the csv module's size limit
            record, problem = [], f"stray or unterminated quote ({e})"
        if source.ran_out:
            problem = "unterminated quote, runs to the end of the file"
        if not problem and not "".join(record).strip():
            continue  # a blank line
        if header is None:
            if problem:
                raise CatalogError(f"{path}: line {start + 1} (the header) cannot be read: {problem}. "
                                   f"Fix: close or remove the quote on line {start + 1}; {guide}")
            header, header_text = record, "".join(lines[start:source.pos])
            continue
        if not problem and len(record) != len(header):
            over = f" over lines {start + 1}-{source.pos} (a stray quote?)" if source.pos - start > 1 else ""
            problem = f"{len(record)} fields{over}, expected {len(header)}"
        if problem:
            broken.append(f"line {start + 1}: {problem}")
            source = _Lines(lines, start + 1)
            reader = csv.reader(source, strict=True)
            continue
        rows.append(record)
        row_lines.append(start + 1)
    if header is None:
        raise CatalogError(f"{path}: empty file. Fix: export the table again, header line first; {guide}")
    names = list(pd.read_csv(io.StringIO(header_text), nrows=0).columns)  # pandas' names for "" and repeats
    index = pd.Index(row_lines, dtype="int64") - 2
    return pd.DataFrame(rows, columns=names if len(names) == len(header) else header, index=index, dtype=str), broken


def _blank(path: Path) -> bool:
    """Whether the file holds nothing but whitespace (reads at most its first 64 KB)."""
    with open(path, "rb") as f:
        return not f.read(1 << 16).strip() and not f.read(1)


def _read_rows(path: Path, report: ValidationReport, guide: str) -> pd.DataFrame:
    """A CSV's rows as strings, column names stripped; broken rows skipped and reported.

    The index + 2 is each row's line in the file (the header is line 1). pandas' C parser reads a
    sound file; any sign of a broken row sends the file to the record-by-record reader. What cannot
    be read at all (missing, empty, binary, not UTF-8, header unreadable or split by another
    separator, every row broken) raises :class:`CatalogError` naming the cause.
    """
    if not path.is_file():
        raise CatalogError(f"{path}: file not found. Fix: point --catalog at the folder holding {path.name}; {guide}")
    data = path.read_bytes()
    _check_text(path, data, guide)
    df, broken = _read_fast(data), []
    if df is None:
        df, broken = _read_by_record(_decode(path, data, guide), path, guide)
    df.columns = [c.strip() for c in df.columns]
    sep = next((s for s in ";\t|" if len(df.columns) == 1 and s in df.columns[0]), None)
    if sep:
        raise CatalogError(f"{path}: not a CSV: its header reads as one column, {df.columns[0][:60]!r}, split by "
                           f"{sep!r}. Fix: export it comma-separated; {guide}")
    if broken and df.empty:
        raise CatalogError(f"{path}: every row is broken ({len(broken)}), e.g. {broken[0]}. Fix: give each row "
                           f"the header's {len(df.columns)} fields separated by ','; put a field holding ',', '\"' "
                           f"or a line break in double quotes, with its own quotes doubled; {guide}")
    report.add(path.name, "broken rows (wrong number of fields, stray or unterminated quote)", broken, "skipped")
    return df


def _check_columns(df: pd.DataFrame, path: Path, report: ValidationReport, required: list[str],
                   expected: list[str], guide: str) -> pd.DataFrame:
    """Repair misspelled ``required`` and ``expected`` columns and fill missing expected ones with "",
    reporting both; a missing required column raises :class:`CatalogError`."""
    renamed = {}
    for col in required + expected:
        if col in df.columns:
            continue
        close = difflib.get_close_matches(col, [c for c in df.columns if c not in required + expected], 1, 0.8)
        if close:
            renamed[close[0]] = col
    if renamed:
        df = df.rename(columns=renamed)
        report.add(path.name, "misspelled columns", [f"'{a}' read as '{b}'" for a, b in renamed.items()],
                   "renamed")
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise CatalogError(f"{path}: required column(s) {missing} missing; found {list(df.columns)}. "
                           f"Fix: {path.name} needs {' and '.join(missing)} column(s) in its header line; {guide}")
    absent = [c for c in expected if c not in df.columns]
    report.add(path.name, "missing columns", absent, "filled with empty values")
    for c in absent:
        df[c] = ""
    return df


def _read_csv(path: Path, report: ValidationReport, required: list[str], expected: list[str],
              guide: str) -> pd.DataFrame:
    """Read a CSV as strings: broken rows skipped, misspelled columns repaired, both reported."""
    return _check_columns(_read_rows(path, report, guide), path, report, required, expected, guide)


def _unique_ids(df: pd.DataFrame, col: str, file: str, report: ValidationReport) -> pd.DataFrame:
    df[col] = df[col].str.strip()
    empty = df[col] == ""
    report.add(file, f"rows without {col}", (df.index[empty] + 2).tolist(), "skipped")
    df = df[~empty]
    dup = df[col].duplicated()
    report.add(file, f"duplicate {col}", df.loc[dup, col].tolist(), "kept the first")
    return df[~dup].set_index(col)


def _attach_images(products: pd.DataFrame, paths: list[Path | None], file: str, report: ValidationReport) -> None:
    """Set ``image_path`` to the absolute path where the file exists and is non-empty, else ""."""
    ok = []
    for p in paths:
        try:
            ok.append(p is not None and p.stat().st_size > 0)
        except (OSError, ValueError):
            ok.append(False)
    ok = np.array(ok, dtype=bool)
    products["image_path"] = np.where(ok, [str(p or "") for p in paths], "")
    report.add(file, "missing or empty image files", [f"{i} ({p})" for i, p, k in zip(products.index, paths, ok)
                                                      if not k], "product kept without a photo",
               count=int((~ok).sum()))


def _parse_times(text: pd.Series) -> pd.Series:
    """Timestamps as naive UTC datetime64[ns], NaT where unreadable. ISO 8601 (fast, any mix of dates,
    times and offsets) first; other formats are parsed one by one."""
    times = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601")
    rest = times.isna() & (text.str.strip() != "")
    if rest.any():
        times[rest] = pd.to_datetime(text[rest], errors="coerce", utc=True, format="mixed")
    return times.dt.tz_convert(None).astype("datetime64[ns]")


def _purchases(df: pd.DataFrame, cols: dict[str, str], products: pd.DataFrame, file: str,
               report: ValidationReport) -> pd.DataFrame:
    """Normalise purchase rows; drop rows of unknown products or unreadable dates."""
    out = pd.DataFrame({
        "customer_id": df[cols["customer_id"]].str.strip(),
        "product_id": df[cols["product_id"]].str.strip(),
        "timestamp": _parse_times(df[cols["timestamp"]]) if cols.get("timestamp") in df
        else pd.Series(pd.NaT, index=df.index, dtype="datetime64[ns]"),
        "price": pd.to_numeric(df[cols["price"]], errors="coerce") if cols.get("price") in df else np.nan,
    })
    out["timestamp"] = out["timestamp"].astype("datetime64[ns]")
    unknown = ~out["product_id"].isin(products.index)
    report.add(file, "purchases of unknown products", out.loc[unknown, "product_id"].unique().tolist(),
               "skipped", count=int(unknown.sum()))
    out = out[~unknown]
    if cols.get("timestamp") in df:
        bad_date = out["timestamp"].isna() & (df.loc[out.index, cols["timestamp"]].str.strip() != "")
        report.add(file, "unreadable dates", df.loc[out.index[bad_date], cols["timestamp"]].tolist(), "skipped",
                   count=int(bad_date.sum()))
        out = out[~bad_date]
    no_customer = out["customer_id"] == ""
    report.add(file, "purchases without a customer", (out.index[no_customer] + 2).tolist(), "skipped")
    return out[~no_customer].sort_values("timestamp", kind="stable").reset_index(drop=True)


def _customers(df: pd.DataFrame | None, id_col: str, purchases: pd.DataFrame, file: str,
               report: ValidationReport) -> pd.DataFrame:
    if df is None:
        customers = pd.DataFrame(index=pd.Index([], name="customer_id", dtype=str))
    else:
        customers = _unique_ids(df, id_col, file, report)
        customers.index.name = "customer_id"
    unseen = pd.Index(purchases["customer_id"].unique()).difference(customers.index)
    if len(unseen):
        if df is not None:
            report.add(file, "customers with purchases but no row", unseen.tolist(), "added without attributes",
                       count=len(unseen))
        customers = pd.concat([customers, pd.DataFrame(index=pd.Index(unseen, name="customer_id"))]).fillna("")
    return customers


# ---------------------------------------------------------------- loaders

def load_hm(root: str | Path) -> Catalog:
    """Read the H&M layout: articles.csv, customers.csv, transactions_train.csv, images/<3 digits>/<id>.jpg."""
    root = Path(root).resolve()
    report = ValidationReport()
    art = _read_csv(root / "articles.csv", report, ["article_id"], list(HM_PRODUCT_COLUMNS), HM_GUIDE)
    products = _unique_ids(art, "article_id", "articles.csv", report)
    products = products[list(HM_PRODUCT_COLUMNS)].rename(columns=HM_PRODUCT_COLUMNS)
    products.index.name = "product_id"
    products["group_id"] = products["group_id"].where(products["group_id"] != "", products.index.str[:7])
    _attach_images(products, [root / "images" / pid[:3] / f"{pid}.jpg" for pid in products.index],
                   "images/", report)
    products["sentence"] = product_sentences(products)

    tx_path = root / "transactions_train.csv"
    if tx_path.is_file():
        tx = _read_csv(tx_path, report, ["customer_id", "article_id"], ["t_dat", "price"], HM_GUIDE)
        purchases = _purchases(tx, {"customer_id": "customer_id", "product_id": "article_id",
                                    "timestamp": "t_dat", "price": "price"}, products, tx_path.name, report)
    else:
        report.add("transactions_train.csv", "file missing", ["no purchases loaded"], "catalogue without purchases",
                   count=1)
        purchases = _purchases(pd.DataFrame(columns=["customer_id", "article_id"]),
                               {"customer_id": "customer_id", "product_id": "article_id"}, products,
                               tx_path.name, report)
    cu_path = root / "customers.csv"
    cu = _read_csv(cu_path, report, ["customer_id"], [], HM_GUIDE) if cu_path.is_file() else None
    customers = _customers(cu, "customer_id", purchases, cu_path.name, report)
    return Catalog(f"H&M ({root.name})", str(root), products, customers, purchases, report)


def load_generic(root: str | Path, columns: dict[str, str] | None = None) -> Catalog:
    """Read the generic layout: items.csv (item_id, title, description, image, attributes...),
    optional interactions.csv (user_id, item_id, timestamp) and users.csv (user_id, attributes...).

    items.csv columns that :data:`ROLE_SYNONYMS` recognises, or that ``columns`` (role -> column;
    when None, columns.json beside items.csv) names, are renamed to their roles; the others stay
    attributes under their own names.
    """
    root = Path(root).resolve()
    report = ValidationReport()
    explicit, source = _explicit_roles(root, columns)
    items_path = root / "items.csv"
    items = _read_rows(items_path, report, GENERIC_GUIDE)
    try:
        items = _apply_roles(items, explicit, source, items_path.name, report)
    except CatalogError as e:
        where = root / COLUMNS_FILE if source == COLUMNS_FILE else "the columns= mapping"
        raise CatalogError(f"{where}: {e}. Fix: map roles to columns of {items_path} as "
                           f"{{\"role\": \"column\"}}; {GENERIC_GUIDE}") from None
    items = _check_columns(items, items_path, report, ["item_id"], ["title", "description", "image"], GENERIC_GUIDE)
    products = _unique_ids(items, "item_id", "items.csv", report)
    products.index.name = "product_id"
    if "group_id" not in products:
        products["group_id"] = products.index
    products["title"] = products["title"].where(products["title"] != "", products.index.to_series())
    image = products.pop("image").str.strip()
    _attach_images(products, [root / p if p else None for p in image],
                   "items.csv image column", report)
    products["sentence"] = product_sentences(products)

    it_path = root / "interactions.csv"
    blank = it_path.is_file() and _blank(it_path)  # a shop with no sales yet: no purchases, as without the file
    if blank:
        report.add(it_path.name, "empty file", [str(it_path)], "read as no purchases")
    if it_path.is_file() and not blank:
        it = _read_csv(it_path, report, ["user_id", "item_id"], ["timestamp"], GENERIC_GUIDE)
        purchases = _purchases(it, {"customer_id": "user_id", "product_id": "item_id", "timestamp": "timestamp",
                                    "price": "price"}, products, it_path.name, report)
    else:
        purchases = _purchases(pd.DataFrame(columns=["user_id", "item_id"]),
                               {"customer_id": "user_id", "product_id": "item_id"}, products, it_path.name, report)
    us_path = root / "users.csv"
    users = _read_csv(us_path, report, ["user_id"], [], GENERIC_GUIDE) if us_path.is_file() else None
    customers = _customers(users, "user_id", purchases, us_path.name, report)
    return Catalog(f"{root.name}", str(root), products, customers, purchases, report)


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
