"""Canary pairs: clear-cut preference pairs with a known answer, to check that a feedback model (judge) or a
preference model points the way its constitution says before anyone trains on what it produces.

A small judge can label pairs close to coin flips, or systematically backwards (favouring length, confidence
or eager compliance), and a preference model trained on those labels inherits the direction. Both failures are
silent in the training loss. Canaries make them visible: a few dozen pairs where any reasonable reader of the
constitution agrees which answer is better, scored by the same code path the real run uses.

Each shipped constitution has a set in ``constitutions/canaries/<name>.jsonl`` in the `compare`/`train-pm`
pair format (``id``, ``prompt``, ``chosen``, ``rejected``) plus ``kind``, the class of the worse answer.
"""

from caitool.canaries.checks import (
    CanaryReport,
    JudgeReport,
    check_judge,
    check_preference_model,
    format_report,
    judge_check,
    preference_model_check,
    require,
)
from caitool.canaries.sets import (
    CANARY_FIELDS,
    DEFAULT_MIN_ACCURACY,
    FIX,
    CanaryFailure,
    CanaryPair,
    Chat,
    canaries_for_records,
    canaries_path,
    constitution_of,
    load_canaries,
    shipped_canaries_dir,
    shipped_canary_names,
)

__all__ = [
    "CANARY_FIELDS",
    "CanaryFailure",
    "CanaryPair",
    "CanaryReport",
    "Chat",
    "DEFAULT_MIN_ACCURACY",
    "FIX",
    "JudgeReport",
    "canaries_for_records",
    "canaries_path",
    "check_judge",
    "check_preference_model",
    "constitution_of",
    "format_report",
    "judge_check",
    "load_canaries",
    "preference_model_check",
    "require",
    "shipped_canaries_dir",
    "shipped_canary_names",
]
