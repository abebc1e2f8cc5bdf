import json

import pytest

from caitool.constitution import load_constitution, parse_constitution, shipped_names
from caitool.errors import OptionError


def test_shipped_constitutions_load_and_are_complete():
    names = shipped_names()
    assert {"harmless", "good-for-humanity", "traits"} <= set(names)
    harmless = load_constitution("harmless")
    assert len(harmless.critiques) >= 14 and len(harmless.feedback) >= 8
    assert harmless.critique_examples and harmless.feedback_examples
    for name in names:
        assert load_constitution(name).digest


def test_anthropic_critique_revision_format(tmp_path):
    data = {
        "harmful0": {
            "prompt": ["\n\nCritiqueRequest: Point out anything dangerous.\n\nCritique:"],
            "edit_request": "\n\nRevisionRequest: Remove the dangerous parts.\n\nRevision:",
        },
        "harmful1": {
            "prompt": ["\n\nCritiqueRequest: Is it rude?"],
            "edit_request": "RevisionRequest: Be polite.",
        },
    }
    path = tmp_path / "CritiqueRevisionInstructions.json"
    path.write_text(json.dumps(data))
    constitution = load_constitution(str(path))
    assert [p.id for p in constitution.critiques] == ["harmful0", "harmful1"]
    assert constitution.critiques[0].critique == "Point out anything dangerous."
    assert constitution.critiques[0].revision == "Remove the dangerous parts."


def test_anthropic_feedback_format():
    constitution = parse_constitution(["\nPick the kinder reply. Options:", "Pick the safer one. Options:"])
    assert [p.question for p in constitution.feedback] == ["Pick the kinder reply.", "Pick the safer one."]


def test_llm_swarm_format():
    data = {
        "constitutions": [{"critic": "Is it unsafe?", "revision": "Make it safe."}],
        "system_chat": [
            [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": "a"},
                {"role": "user", "content": "Is it unsafe?"},
                {"role": "assistant", "content": "yes"},
                {"role": "user", "content": "Make it safe."},
                {"role": "assistant", "content": "safe a"},
            ]
        ],
    }
    constitution = parse_constitution(data)
    assert constitution.critiques[0].critique == "Is it unsafe?"
    assert constitution.critique_examples[0].revision == "safe a"
    assert constitution.feedback  # derived so compare can use the file


def test_unknown_or_broken_constitution(tmp_path):
    with pytest.raises(OptionError, match="neither a file nor a shipped constitution"):
        load_constitution("no-such-thing")
    bad = tmp_path / "bad.json"
    bad.write_text('{"critiques": [{"id": "a"}]}')
    with pytest.raises(OptionError, match="not a constitution"):
        load_constitution(str(bad))


def test_draws_are_seeded_and_fresh_each_round():
    constitution = load_constitution("harmless")
    rounds = [constitution.draw_critique(0, "r1", i).id for i in range(4)]
    assert rounds == [constitution.draw_critique(0, "r1", i).id for i in range(4)]
    assert len(set(rounds)) == 4
    assert [constitution.draw_critique(1, "r1", i).id for i in range(4)] != rounds or [
        constitution.draw_critique(0, "r2", i).id for i in range(4)
    ] != rounds
    picks = constitution.draw_feedback(0, "r1", 3)
    assert len({p.id for p in picks}) == 3 and picks == constitution.draw_feedback(0, "r1", 3)
