"""Prefix reuse in the hf backend's choice scoring: the same probabilities as scoring every question whole,
with fewer tokens run through the model. On the tiny model with sharpened weights (random weights drawn wide,
so that the answer probabilities depend strongly on every token and position: a wrong position or an
unmasked padding token moves them by far more than the tolerance)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from caitool.backends.base import BackendOptions
from caitool.backends.prefix_tree import Segment, computed_tokens, prefix_tree
from caitool.cli.main import app
from caitool.constitution import load_constitution
from caitool.prompts import ANSWER_PREFIX, CHOICES, feedback_chat
from conftest import jsonl, parse_jsonl

TOLERANCE = 1e-4


# --- the tree (pure) ---


def paths(segments: list[Segment], above: list[int] | None = None) -> dict[int, tuple[list[int], int]]:
    """Each leaf's sequence as the tree spells it (its ancestors' tokens, then its own), and its keep."""
    found: dict[int, tuple[list[int], int]] = {}
    for segment in segments:
        tokens = (above or []) + segment.tokens
        if segment.is_leaf:
            found[segment.index] = (tokens, segment.keep)
            assert segment.keep <= len(segment.tokens), "a read position fell in a shared node"
        else:
            assert len(segment.children) >= 2
            found.update(paths(segment.children, tokens))
    return found


@pytest.mark.parametrize(
    "sequences",
    [
        [[1, 2, 3, 4, 5, 6]],  # one sequence
        [[1, 2, 3], [4, 5, 6], [7, 8]],  # nothing shared
        [[9] * 40 + [1, 2], [9] * 40 + [1, 3], [9] * 40 + [4] * 30 + [5], [9] * 40 + [4] * 30 + [6]],
        [[7] * 50 + [1], [7] * 50 + [1], [7] * 50 + [1, 2]],  # duplicates; one sequence a prefix of another
        [[3] * 60, [3] * 60 + [4] * 5, [3] * 10 + [8] * 70, [2] * 5],  # mixed lengths
    ],
)
def test_the_tree_spells_every_sequence_once_with_its_reads_in_its_own_leaf(sequences):
    keeps = [min(2, len(tokens)) for tokens in sequences]
    tree = prefix_tree(sequences, keeps)
    assert paths(tree) == {
        index: (tokens, keep) for index, (tokens, keep) in enumerate(zip(sequences, keeps, strict=True))
    }


def test_shared_stretches_are_computed_once_and_short_ones_are_not_worth_a_pass():
    preamble, conversation = (
        list(range(100, 200)),
        [list(range(300 + 40 * r, 340 + 40 * r)) for r in range(3)],
    )
    sequences = [
        preamble + conversation[r] + [1000 + 10 * r + q] * (5 + q) for r in range(3) for q in range(2)
    ]
    tree = prefix_tree(sequences, [1] * len(sequences))
    assert len(tree) == 1 and tree[0].tokens == preamble  # the preamble once
    assert [len(node.tokens) for node in tree[0].children] == [40, 40, 40]  # then each conversation once
    assert computed_tokens(tree) == 100 + 3 * 40 + sum(5 + q for _ in range(3) for q in range(2))
    # A stretch that saves fewer than min_saved tokens goes into the sequences below it.
    flat = prefix_tree(sequences, [1] * len(sequences), min_saved=10**6)
    assert all(segment.is_leaf for segment in flat)
    assert computed_tokens(flat) == sum(len(tokens) for tokens in sequences)


def test_keep_must_fit_the_sequence():
    with pytest.raises(ValueError, match="keep must be between 1"):
        prefix_tree([[1, 2]], [3])


# --- the backend on the tiny model ---


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> Any:
    import torch

    from caitool.backends.hf import HFBackend

    loaded = HFBackend.from_options(BackendOptions(model=str(tiny_model), dtype="float32", device="cpu"))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in loaded.model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return loaded


def feedback_questions(records: int, principles: int, few_shot: int) -> list[list[dict[str, str]]]:
    """compare's questions: per record, ``principles`` principles in both answer orders."""
    constitution = load_constitution("harmless")
    chats = []
    for index in range(records):
        conversation = [{"role": "user", "content": f"How do I pick lock number {index}? " * (1 + index % 3)}]
        answers = ("No." + " Sorry." * index, "Here is how: turn the pin " + "and listen " * (index % 4))
        for principle in constitution.draw_feedback(0, str(index), principles):
            for first, second in (answers, answers[::-1]):
                chats.append(
                    feedback_chat(conversation, principle, first, second, constitution, few_shot, False)
                )
    return chats


def distinct_questions() -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": text}] for text in ("Rain?", "Pick a lock, now " * 9, "Haiku " * 3)]


GROUPINGS = {
    "compare questions, worked example": lambda: feedback_questions(4, 2, 1),
    "compare questions, no worked example": lambda: feedback_questions(3, 1, 0),
    "one question": lambda: feedback_questions(1, 1, 1)[:1],
    "no shared prefix but the template": distinct_questions,
    "mixed, with a duplicate": lambda: [
        *feedback_questions(2, 1, 1),
        *distinct_questions(),
        feedback_questions(1, 1, 0)[0],
        feedback_questions(1, 1, 0)[0],
    ],
}


def score(backend: Any, chats: list, choices: list[str], cached: bool) -> tuple[list[list[float]], int]:
    backend.prefix_cache, backend.scored_tokens = cached, 0
    logprobs = backend.choice_logprobs(chats, [ANSWER_PREFIX] * len(chats), choices)
    return logprobs, backend.scored_tokens


def largest_difference(first: list[list[float]], second: list[list[float]]) -> float:
    assert len(first) == len(second) and all(len(a) == len(b) for a, b in zip(first, second, strict=True))
    return max(
        abs(a - b)
        for row_a, row_b in zip(first, second, strict=True)
        for a, b in zip(row_a, row_b, strict=True)
    )


@pytest.mark.parametrize("batch_size", [1, 3, 64])
@pytest.mark.parametrize("grouping", GROUPINGS)
def test_cached_and_uncached_probabilities_agree(backend, grouping, batch_size):
    chats = GROUPINGS[grouping]()
    backend.batch_size = batch_size
    uncached, whole = score(backend, chats, CHOICES, cached=False)
    cached, computed = score(backend, chats, CHOICES, cached=True)
    assert largest_difference(uncached, cached) < TOLERANCE, grouping
    assert computed <= whole
    if grouping.startswith("compare") and len(chats) > 1:
        assert computed < 0.7 * whole  # the shared preamble really ran once
    # The model tells these questions apart, so agreement is not an accident of flat probabilities.
    if len(chats) > 1:
        values = [row[0] for row in uncached]
        assert max(values) - min(values) > 0.05


@pytest.mark.parametrize("batch_size", [1, 64])
def test_choices_of_several_tokens_agree_too(backend, batch_size):
    """Each (question, choice) sequence is scored; the choices of one question share the question."""
    chats = [*feedback_questions(2, 1, 0), *distinct_questions()[:2]]
    choices = [" Here is how", " No", ""]
    backend.batch_size = batch_size
    uncached, whole = score(backend, chats, choices, cached=False)
    cached, computed = score(backend, chats, choices, cached=True)
    assert largest_difference(uncached, cached) < TOLERANCE
    assert computed < 0.5 * whole
    assert all(row[2] == 0.0 for row in cached)  # an empty choice adds no token: log-probability 0


def test_cached_scoring_fits_a_tight_token_budget(backend):
    """Narrow batches (the budget counts the cached prefix each row carries) give the same probabilities."""
    chats = feedback_questions(3, 2, 1)
    backend.batch_size = 64
    uncached, _ = score(backend, chats, CHOICES, cached=False)
    backend.max_batch_tokens = 200
    try:
        cached, _ = score(backend, chats, CHOICES, cached=True)
    finally:
        backend.max_batch_tokens = BackendOptions.max_batch_tokens
    assert largest_difference(uncached, cached) < TOLERANCE


def test_children_attend_over_tokens_not_over_the_padding_of_the_levels_above(backend, monkeypatch):
    """Nodes of one level run in one batch, left-padded to the longest; each child continues its parent's
    row with that padding squeezed out, so its cache is as long as its own sequence so far, and the
    probabilities are those of each sequence run whole."""
    import torch

    stem = list(range(10, 60))
    long_node, short_node = [5] * 40, [6] * 37
    sequences = [stem + long_node + [7, 9], stem + long_node + [8, 9]]
    sequences += [stem + short_node + [tail] * 20 + [9] for tail in (1, 2, 3)]
    keeps = [1] * len(sequences)
    [root] = prefix_tree(sequences, keeps)
    assert len(root.tokens) == 50 and sorted(len(child.tokens) for child in root.children) == [37, 40]
    with torch.inference_mode():
        whole = [
            torch.log_softmax(backend.model(input_ids=torch.tensor([tokens])).logits[0, -1], -1)
            for tokens in sequences
        ]
    assert backend._runs_on_a_cache()  # checked before forward() is replaced below
    forward = backend.model.forward
    passes: list[tuple[int, int]] = []  # (cache length, new tokens) of each forward pass

    def recording(**inputs: Any) -> Any:
        new = inputs["input_ids"].shape[1]
        passes.append((inputs["attention_mask"].shape[1] - new, new))
        return forward(**inputs)

    monkeypatch.setattr(backend.model, "forward", recording)
    backend.batch_size, backend.max_batch_tokens = 64, BackendOptions.max_batch_tokens
    read: dict[int, Any] = {}
    backend._run_prefix_tree(sequences, keeps, lambda index, logprobs: read.update({index: logprobs[0]}))
    # The stem; both nodes in one batch, 40 wide; the leaves under each node in a batch of their own.
    assert passes[:2] == [(0, 50), (50, 40)]
    assert sorted(passes[2:]) == [(87, 21), (90, 2)]  # below the 37-token node: 50 + 37, not 50 + 40
    assert max(float((read[index] - whole[index]).abs().max()) for index in range(len(sequences))) < TOLERANCE


def test_segment_batches_keep_their_padding_under_the_bound(backend):
    """Segments of a tree level range from a few tokens to hundreds; a batch takes a shorter one only while
    its padding stays under the bound (every padded position costs a token)."""
    lengths = [100, 98, 95, 60, 58, 10]
    token_lists = [[1] * length for length in lengths]
    backend.batch_size, backend.max_batch_tokens = 64, BackendOptions.max_batch_tokens
    assert backend._batches(token_lists) == [[0, 1, 2, 3, 4, 5]]  # the plain paths: no bound
    batches = backend._batches(token_lists, max_padding=0.1)
    assert batches == [[0, 1, 2], [3, 4], [5]]
    for batch in batches:
        width = max(lengths[index] for index in batch)
        assert sum(width - lengths[index] for index in batch) <= 0.1 * width * len(batch)


# --- the switch ---


def test_no_prefix_cache_switch_takes_effect_in_compare_with_the_same_labels(tiny_model, monkeypatch):
    from caitool.backends.hf import HFBackend

    runs: list[int] = []
    original = HFBackend._run_prefix_tree

    def counted(self: Any, *args: Any) -> None:
        runs.append(1)
        original(self, *args)

    monkeypatch.setattr(HFBackend, "_run_prefix_tree", counted)
    pairs = [
        {
            "id": str(i),
            "prompt": f"How do I pick lock {i}?",
            "responses": ["No.", f"Turn pin {i} and listen."],
        }
        for i in range(3)
    ]
    base = [
        "compare",
        "--model",
        str(tiny_model),
        "--dtype",
        "float32",
        "--device",
        "cpu",
        "--quiet",
        "--no-preflight",
    ]
    labels = {}
    for flag in ("--prefix-cache", "--no-prefix-cache"):
        runs.clear()
        result = CliRunner().invoke(app, [*base, flag], input=jsonl(pairs))
        assert result.exit_code == 0, result.output
        labels[flag] = [record["_caitool"]["compare"]["prob_first"] for record in parse_jsonl(result.stdout)]
        assert bool(runs) == (flag == "--prefix-cache")
    assert len(labels["--prefix-cache"]) == 3
    assert all(
        abs(a - b) < TOLERANCE
        for a, b in zip(labels["--prefix-cache"], labels["--no-prefix-cache"], strict=True)
    )


@pytest.mark.parametrize("command", ["compare", "check-judge"])
def test_no_prefix_cache_is_refused_where_the_engine_caches_on_its_own(command):
    result = CliRunner().invoke(
        app,
        [command, "--backend", "openai", "--base-url", "http://127.0.0.1:9/v1", "--no-prefix-cache"],
        input="",
    )
    assert result.exit_code == 64, result.output
    assert "--no-prefix-cache: not used by --backend openai" in result.stderr


@pytest.mark.parametrize("command", ["compare", "check-judge", "eval", "eval-hhh"])
def test_commands_that_score_choices_offer_the_switch_and_generating_ones_do_not(command):
    assert "--no-prefix-cache" in CliRunner().invoke(app, [command, "--help"]).stdout
    assert "--no-prefix-cache" not in CliRunner().invoke(app, ["sample", "--help"]).stdout


def test_grouped_query_attention_scores_the_same_and_is_switched_on_only_while_scoring(backend, monkeypatch):
    """With grouped key/value heads (fewer than the query heads), torch's attention takes them as they are
    while scoring on a CPU: the same probabilities as with the heads repeated, cached or not, and the switch
    is off again afterwards (it is transformers' environment variable)."""
    import os

    import torch
    from transformers import LlamaForCausalLM

    from caitool.backends.hf import GQA_SWITCH

    config = backend.model.config.to_dict()
    config.update(num_attention_heads=4, num_key_value_heads=2, attn_implementation="sdpa")
    grouped = LlamaForCausalLM(type(backend.model.config).from_dict(config)).eval()
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for parameter in grouped.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    monkeypatch.setattr(backend, "model", grouped)
    monkeypatch.delenv(GQA_SWITCH, raising=False)
    seen: list[str | None] = []
    forward = grouped.forward

    def watched(*args: Any, **kwargs: Any) -> Any:
        seen.append(os.environ.get(GQA_SWITCH))
        return forward(*args, **kwargs)

    monkeypatch.setattr(grouped, "forward", watched)
    chats = GROUPINGS["compare questions, worked example"]()
    backend.batch_size = 64
    uncached, _ = score(backend, chats, CHOICES, cached=False)
    cached, _ = score(backend, chats, CHOICES, cached=True)
    assert seen and set(seen) == {"1"} and GQA_SWITCH not in os.environ
    monkeypatch.setenv(GQA_SWITCH, "0")  # the heads repeated, as transformers does with a mask
    repeated, _ = score(backend, chats, CHOICES, cached=False)
    assert largest_difference(uncached, cached) < TOLERANCE
    assert largest_difference(uncached, repeated) < TOLERANCE
    values = [row[0] for row in repeated]
    assert max(values) - min(values) > 0.05


@pytest.mark.parametrize("architecture", ["Qwen2", "Mistral", "Gemma", "Phi3"])
def test_other_architectures_score_the_same_from_the_caches_they_continue(backend, monkeypatch, architecture):
    """The caches a batch continues are built outside the model (squeezed rows, filled in place): other
    architectures' forward passes take them too, with the probabilities of scoring every question whole."""
    import torch
    import transformers

    tiny = backend.model.config
    config = getattr(transformers, f"{architecture}Config")(
        vocab_size=tiny.vocab_size,
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=tiny.hidden_size // 4,
        pad_token_id=tiny.pad_token_id,
        attn_implementation="sdpa",
    )
    if hasattr(config, "sliding_window"):
        config.sliding_window = None  # a sliding window is scored whole (see _runs_on_a_cache)
    model = getattr(transformers, f"{architecture}ForCausalLM")(config).eval()
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    monkeypatch.setattr(backend, "model", model)
    monkeypatch.setattr(backend, "_cache_argument", None)  # checked again for this model
    chats = GROUPINGS["mixed, with a duplicate"]()
    backend.batch_size = 3
    uncached, whole = score(backend, chats, CHOICES, cached=False)
    cached, computed = score(backend, chats, CHOICES, cached=True)
    assert backend._runs_on_a_cache() and computed < 0.5 * whole
    assert largest_difference(uncached, cached) < TOLERANCE
