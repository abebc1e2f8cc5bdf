"""Canary pairs: clear-cut preference pairs with a known answer, to check that a feedback model (judge) or a
preference model points the way its constitution says before anyone trains on what it produces.

A small judge can label pairs close to coin flips, or systematically backwards (favouring length, confidence
or eager compliance), and a preference model trained on those labels inherits the direction. Both failures are
silent in the training loss. Canaries make them visible: clear-cut pairs where any reasonable reader of the
constitution agrees which answer is better, scored by the same code path the real run uses.

Each shipped constitution has a set in ``constitutions/canaries/<name>.jsonl`` in the `compare`/`train-pm`
pair format (``id``, ``prompt``, ``chosen``, ``rejected``) plus ``kind``, the class of the worse answer.

The one home of canaries: ``sets`` (loading), ``checks`` (scoring a judge or a preference model),
``rule`` (the gate's rule), ``labels`` (whether `compare`'s labels carry signal), ``gate`` (what `train-pm`
stores and `rl` decides), ``preflight`` (`compare`'s check of its judge) and ``in_eval`` (`eval`'s check of
its judge). Below `training` and `evaluation`, above `stages`.
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
from caitool.canaries.labels import label_signal
from caitool.canaries.rule import GATE_RULE, gate_reasons
from caitool.canaries.sets import (
    CANARY_FIELDS,
    FIX,
    CanaryFailure,
    CanaryPair,
    Chat,
    balanced,
    canaries_for_records,
    canaries_path,
    constitution_of,
    load_canaries,
    shipped_canaries_dir,
    shipped_canary_names,
)

__all__ = [
    "CANARY_FIELDS",
    "GATE_RULE",
    "CanaryFailure",
    "CanaryPair",
    "CanaryReport",
    "Chat",
    "FIX",
    "JudgeReport",
    "balanced",
    "canaries_for_records",
    "canaries_path",
    "check_judge",
    "check_preference_model",
    "constitution_of",
    "format_report",
    "gate_reasons",
    "judge_check",
    "label_signal",
    "load_canaries",
    "preference_model_check",
    "require",
    "shipped_canaries_dir",
    "shipped_canary_names",
]
