"""Column roles: which of a shop's columns Atelier reads as its title, colour, pattern, product type..."""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pandas as pd

from core.data.catalog import CatalogError, ValidationReport

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


def plain_name(name: str) -> str:
    """A column name without case or separators: "baseColour", "base_colour" -> "basecolour"."""
    return re.sub(r"[\W_]+", "", name).casefold()


_SYNONYM_ROLE = {plain_name(s): role for role, synonyms in ROLE_SYNONYMS.items() for s in synonyms}


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
    plain = {c: plain_name(c) for c in columns}
    for role, synonyms in ROLE_SYNONYMS.items():
        if role in explicit:
            continue
        free = [c for c in columns if c not in roles]
        match = next((c for s in map(plain_name, synonyms) for c in free if plain[c] == s), None)
        if match is not None:
            roles[match] = role
    return roles


def explicit_roles(root: Path, columns: dict[str, str] | None) -> tuple[dict[str, str], str]:
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


def apply_roles(df: pd.DataFrame, explicit: dict[str, str], source: str, file: str,
                 report: ValidationReport) -> pd.DataFrame:
    """``df`` with its columns renamed to the roles :func:`column_roles` gives them; reports the
    renames and the columns left out because another column took their role."""
    roles = column_roles(list(df.columns), explicit)
    taken = {role: col for col, role in roles.items()}
    left = {c: _SYNONYM_ROLE[plain_name(c)] for c in df.columns
            if c not in roles and plain_name(c) in _SYNONYM_ROLE}
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
