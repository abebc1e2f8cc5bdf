"""Do a run's preference labels carry any signal? Read from `compare`'s own bookkeeping in the records.

`compare` asks every principle in both answer orders. A judge that reads the answers puts the same answer
ahead in both; one that only reads position puts whichever answer is shown first ahead in both, so the two
orders disagree, the averaged label lands near 0.5, and the label's direction is the leftover of two position
verdicts: noise. A preference model trained on such labels learns that noise, and the canaries then decide
its fate by chance. Measured on the embedded 135M model judging its own samples (`sample -n 2 --temperature 1`
on the 64 red-team prompts, `compare --principles 2`): the orders disagreed on 128 of 128 questions and every
``chosen_prob`` lay in 0.50-0.56.

Thresholds, from that measurement: a judge with no position bias and no signal disagrees with itself on about
half the questions, one with signal on fewer; a share of ``ORDER_DISAGREEMENT_LIMIT`` (0.9) or more is a judge
that follows position almost every time (the measured one: 1.0). Labels are crowded when
``CROWDED_SHARE`` (95%) of them lie below ``CROWDED_BELOW`` (0.6, the measured ones: all below 0.56); soft
labels used as given then ask the preference model for reward gaps under logit(0.6) = 0.4. Crowding counts
against the labels only when they are used as given: ``--hard-labels`` and ``--label-temperature`` below 1
keep their direction and drop their scale.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from caitool.diagnostics import order_agreement
from caitool.records import META_KEY

ORDER_DISAGREEMENT_LIMIT = 0.9
CROWDED_BELOW = 0.6
CROWDED_SHARE = 0.95
REMEDIES = (
    "label with a larger feedback model (`caitool compare --model ...`), checking it first with "
    "`caitool check-judge`; or train on pairs whose better answer is known"
)


def label_signal(records: Iterable[dict[str, Any]], soft_as_given: bool = True) -> dict[str, Any] | None:
    """Order agreement and label spread of the `compare`-labelled pairs among ``records``, and whether they
    carry signal (``signal``; when not, ``reasons`` say why); None when no record was labelled by `compare`.
    ``soft_as_given``: the soft labels are trained on as they are (not --hard-labels, label temperature 1)."""
    pairs = agreed = asked = 0
    labels: list[float] = []
    for record in records:
        bookkeeping = record.get(META_KEY)
        feedback = bookkeeping.get("compare") if isinstance(bookkeeping, dict) else None
        if not isinstance(feedback, dict):
            continue
        pairs += 1
        counted = feedback.get("order_agreement")
        if isinstance(counted, dict) and isinstance(counted.get("asked"), int):
            agreed += int(counted.get("agreed", 0))
            asked += counted["asked"]
        elif record.get("chosen") != record.get("rejected"):  # identical answers: one question, not two
            counted = order_agreement(feedback.get("questions"))
            agreed, asked = agreed + counted["agreed"], asked + counted["asked"]
        if isinstance(record.get("chosen_prob"), int | float):
            labels.append(float(record["chosen_prob"]))
    if not pairs:
        return None
    disagreed = asked - agreed
    crowded = sum(label < CROWDED_BELOW for label in labels)
    reasons = []
    if asked and disagreed / asked >= ORDER_DISAGREEMENT_LIMIT:
        reasons.append(
            f"the two answer orders disagreed on {disagreed} of {asked} feedback questions: the judge's "
            "verdicts follow the position of the answers, not their content"
        )
    if soft_as_given and labels and crowded / len(labels) >= CROWDED_SHARE:
        reasons.append(
            f"{crowded} of {len(labels)} labels lie below chosen_prob {CROWDED_BELOW} "
            f"({min(labels):.2f}-{max(labels):.2f}): the judge barely prefers either answer"
        )
    return {
        "pairs": pairs,
        "questions_in_both_orders": asked,
        "orders_disagreed": disagreed,
        "order_disagreement": disagreed / asked if asked else None,
        "chosen_prob_min": min(labels) if labels else None,
        "chosen_prob_max": max(labels) if labels else None,
        "chosen_prob_mean": sum(labels) / len(labels) if labels else None,
        "labels_below_0.6": crowded,
        "signal": not reasons,
        "reasons": reasons,
    }
