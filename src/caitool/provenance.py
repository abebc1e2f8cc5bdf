"""What a record's provenance says about the models that made it, for the stage about to read it."""

from __future__ import annotations

from typing import Any

from caitool.records import META_KEY


def models_named(record: dict[str, Any]) -> list[str]:
    """The models named in ``_caitool.stages``, oldest first (a stage without one, such as `score`, adds
    none)."""
    value = record.get(META_KEY)
    stages = value.get("stages") if isinstance(value, dict) else None
    if not isinstance(stages, list):
        return []
    return [
        entry["model"] for entry in stages if isinstance(entry, dict) and isinstance(entry.get("model"), str)
    ]


def fallback_warning(record: dict[str, Any], stage: str, default_model: str) -> str | None:
    """One line for stderr when a stage falls back to its default ``--model`` although ``record`` was made
    by other models; None when the record names that model or none at all."""
    named = models_named(record)
    if not named or default_model in named:
        return None
    return (
        f"warning: {stage}: --model not given, so it runs on '{default_model}', but the input was made by "
        f"'{named[-1]}'; pass --model {named[-1]} to use that one, or --model {default_model} to keep this"
    )
