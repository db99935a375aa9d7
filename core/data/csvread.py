"""Robust CSV reading: a shop's export read as strings, broken rows skipped and reported, misspelled columns repaired."""
from __future__ import annotations

import codecs
import csv
import difflib
import io
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.catalog import CatalogError, ValidationReport


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


def _one_full_row_per_line(data: bytes, n_rows: int, n_fields: int, sep: str = ",") -> bool:
    """Whether the header and the ``n_rows`` rows pandas read from ``data`` are one line each, of
    ``n_fields`` fields each. Told by counting, not parsing: a file's ``sep`` are its delimiters
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
    d = ord(sep)
    if not (np.isin(before, [d, *b'\n"']).all() and np.isin(after, [d, *b'\r\n"']).all()):
        return False
    if (np.searchsorted(newlines, opens) != np.searchsorted(newlines, closes)).any():
        return False
    commas = np.flatnonzero(b == d)
    quoted = int((np.searchsorted(commas, closes) - np.searchsorted(commas, opens)).sum())
    return len(commas) - quoted == (n_rows + 1) * (n_fields - 1)


def _read_fast(data: bytes, sep: str = ",") -> pd.DataFrame | None:
    """``data`` read by pandas' C parser, or None unless every row is one line with the header's
    number of fields. The C parser would otherwise, without a word, pad a short row, take the
    first column as the index when the first row is one field longer, or read the lines a stray
    quote runs over as one field; such files go to :func:`_read_by_record`."""
    try:
        df = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, sep=sep)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    if not isinstance(df.index, pd.RangeIndex) or not _one_full_row_per_line(data, len(df), len(df.columns), sep):
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


def _read_by_record(text: str, path: Path, guide: str, sep: str = ",", quoting: int = csv.QUOTE_MINIMAL
                    ) -> tuple[pd.DataFrame, list[str]]:
    """Rows of ``text`` with the header's number of fields, read one CSV record at a time, and the
    broken ones ("line 7: unterminated quote, ..."). After a broken record (wrong number of fields,
    text after a closing quote, a quote open to the end of the file) reading starts again on the
    line after its first, so the good rows a stray quote ran over are kept; a quoted field with
    line breaks that closes reads as one field."""
    lines = list(io.StringIO(text, newline=""))  # splits at \n, \r\n and \r, like pandas
    header, header_text = None, ""
    rows, row_lines, broken = [], [], []
    source = _Lines(lines, 0)
    reader = csv.reader(source, strict=True, delimiter=sep, quoting=quoting)
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
            reader = csv.reader(source, strict=True, delimiter=sep, quoting=quoting)
            continue
        rows.append(record)
        row_lines.append(start + 1)
    if header is None:
        raise CatalogError(f"{path}: empty file. Fix: export the table again, header line first; {guide}")
    names = list(pd.read_csv(io.StringIO(header_text), nrows=0, sep=sep,  # pandas' names for "", repeats
                             quoting=quoting).columns)
    index = pd.Index(row_lines, dtype="int64") - 2
    return pd.DataFrame(rows, columns=names if len(names) == len(header) else header, index=index, dtype=str), broken


def is_blank(path: Path) -> bool:
    """Whether the file holds nothing but whitespace (reads at most its first 64 KB)."""
    with open(path, "rb") as f:
        return not f.read(1 << 16).strip() and not f.read(1)


SEPARATORS = ",;\t"  # what a shop's export or a spreadsheet program writes between fields


def header_separator(data: bytes) -> str:
    """The field separator of a delimited file, told from its header line: the one of :data:`SEPARATORS` that
    splits it most outside quotes (a comma on a tie or when none does)."""
    line = data[:1 << 16].split(b"\n", 1)[0].decode("utf-8", errors="replace").removeprefix("\ufeff")
    bare = "".join(part for i, part in enumerate(line.split('"')) if i % 2 == 0)  # outside quotes
    return max(SEPARATORS, key=lambda s: (bare.count(s), s == ","))


def read_rows(path: Path, report: ValidationReport, guide: str, sep: str | None = ",",
              quoted: bool | None = True) -> pd.DataFrame:
    """A delimited file's rows as strings, column names stripped; broken rows skipped and reported. ``sep`` is
    the field separator (None: told from the header line, :func:`header_separator`); ``quoted`` False reads a
    '"' as any other character (a format that never quotes, as Merchant Center's tab-separated feeds), None: so
    when the separator is a tab.

    The index + 2 is each row's line in the file (the header is line 1). pandas' C parser reads a
    sound file; any sign of a broken row sends the file to the record-by-record reader. What cannot
    be read at all (missing, empty, binary, not UTF-8, header unreadable or split by another
    separator, every row broken) raises :class:`CatalogError` naming the cause.
    """
    if not path.is_file():
        raise CatalogError(f"{path}: file not found. Fix: point --catalog at the folder holding {path.name}; {guide}")
    data = path.read_bytes()
    _check_text(path, data, guide)
    sep = sep or header_separator(data)
    quoted = sep != "\t" if quoted is None else quoted
    df, broken = (_read_fast(data, sep) if quoted else None), []
    if df is None:
        df, broken = _read_by_record(_decode(path, data, guide), path, guide, sep,
                                     csv.QUOTE_MINIMAL if quoted else csv.QUOTE_NONE)
    df.columns = [c.strip() for c in df.columns]
    other = next((s for s in ";\t|," if s != sep and len(df.columns) == 1 and s in df.columns[0]), None)
    if other:
        raise CatalogError(f"{path}: not a CSV: its header reads as one column, {df.columns[0][:60]!r}, split by "
                           f"{other!r}. Fix: export it {'comma' if sep == ',' else repr(sep)}-separated; {guide}")
    if broken and df.empty:
        raise CatalogError(f"{path}: every row is broken ({len(broken)}), e.g. {broken[0]}. Fix: give each row "
                           f"the header's {len(df.columns)} fields separated by {sep!r}; put a field holding "
                           f"{sep!r}, '\"' or a line break in double quotes, with its own quotes doubled; {guide}")
    report.add(path.name, "broken rows (wrong number of fields, stray or unterminated quote)", broken, "skipped")
    return df


def check_columns(df: pd.DataFrame, path: Path, report: ValidationReport, required: list[str],
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


def read_csv(path: Path, report: ValidationReport, required: list[str], expected: list[str],
              guide: str) -> pd.DataFrame:
    """Read a CSV as strings: broken rows skipped, misspelled columns repaired, both reported."""
    return check_columns(read_rows(path, report, guide), path, report, required, expected, guide)
