"""Values as a person reads them in reports (`inspect`, `stats`, model cards): numbers rounded to 4
significant digits, lists joined, nested objects flattened to dotted names; never Python's repr."""

from __future__ import annotations

import json
from typing import Any


def shown_value(value: Any) -> str:
    """A value as a person reads it: numbers rounded to 4 significant digits, lists joined, no Python repr."""
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, list | tuple) and all(not isinstance(item, dict | list) for item in value):
        return ", ".join(shown_value(item) for item in value)
    return json.dumps(_rounded(value), ensure_ascii=False)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return float(f"{value:.4g}")
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def flat_fields(fields: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The fields with each nested object replaced by its fields under dotted names."""
    flat: dict[str, Any] = {}
    for key, value in fields.items():
        if isinstance(value, dict) and value:
            flat.update(flat_fields(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def table_rows(fields: dict[str, Any]) -> list[tuple[str, str]]:
    """One (name, value as shown) row per field, nested objects flattened."""
    return [(name, shown_value(value)) for name, value in flat_fields(fields).items()]
