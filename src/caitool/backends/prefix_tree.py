"""Shared prompt prefixes as a tree, so that each shared stretch of tokens is run through the model once.

The questions of one scoring call mostly begin alike: a feedback question repeats the chat template, the
constitution's instructions and worked examples, then the conversation it asks about (shared by the
questions of one record), then the principle's question (shared by both answer orders). :func:`prefix_tree`
turns the token ids of the sequences into a tree of :class:`Segment` s: a node's tokens follow its parent's,
and a leaf is one sequence's rest. Running the root segments first and each child on its parent's key/value
cache computes every token of every sequence exactly once per shared stretch, at the positions it has in the
sequence.

Pure Python over token ids (no torch): comparing ids, not strings, is what makes a cached prefix the same
tokens as the uncached prompt, whatever the tokenizer does at the boundary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

# A node is worth its own forward pass when it saves at least this many token computations (its length times
# the sequences below it, less one). Below that, its tokens go into its children: a forward pass has a fixed
# cost, and a short shared stretch under few sequences does not pay for it.
MIN_SAVED_TOKENS = 32


@dataclass
class Segment:
    """Tokens run on top of the parent's cache. A leaf (``index`` >= 0) is the rest of sequence ``index``,
    whose next-token log-probabilities are read at its last ``keep`` positions; a node has ``children``."""

    tokens: list[int]
    index: int = -1
    keep: int = 0
    children: list[Segment] = field(default_factory=list)

    @property
    def is_leaf(self) -> bool:
        return self.index >= 0

    def sequences(self) -> int:
        """How many sequences run through this segment."""
        return 1 if self.is_leaf else sum(child.sequences() for child in self.children)


def common_length(first: Sequence[int], second: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    length = min(len(first), len(second))
    for position in range(length):
        if first[position] != second[position]:
            return position
    return length


def prefix_tree(
    sequences: Sequence[list[int]], keeps: Sequence[int], min_saved: int = MIN_SAVED_TOKENS
) -> list[Segment]:
    """The segments to run first (each with its subtree); together they cover every sequence.

    ``keeps[i]`` (1 to ``len(sequences[i])``): the last positions of sequence i whose logits are read.
    Those positions always lie in the sequence's own leaf, so no shared node ends where a read is due (and
    identical sequences each get a leaf). Nodes that would save fewer than ``min_saved`` token computations
    are merged into their children.
    """
    if len(sequences) != len(keeps):
        raise ValueError("one keep per sequence")
    for tokens, keep in zip(sequences, keeps, strict=True):
        if not 1 <= keep <= len(tokens):
            raise ValueError(f"keep must be between 1 and the sequence length ({len(tokens)}), got {keep}")
    shareable = [tokens[: len(tokens) - keep] for tokens, keep in zip(sequences, keeps, strict=True)]
    # Sorted, the sequences sharing a prefix are contiguous, and the prefix a range shares is the smallest
    # common length between neighbours in it.
    order = sorted(range(len(sequences)), key=lambda index: shareable[index])
    neighbours = [common_length(shareable[a], shareable[b]) for a, b in zip(order, order[1:], strict=False)]

    def split(low: int, high: int, depth: int) -> list[Segment]:
        """Segments from token ``depth`` on for the sorted sequences ``order[low:high]``."""
        if high - low == 1:
            index = order[low]
            return [Segment(list(sequences[index][depth:]), index, keeps[index])]
        shared = min(neighbours[low : high - 1])
        children: list[Segment] = []
        start = low
        for position in range(low, high - 1):
            if neighbours[position] == shared:
                children += split(start, position + 1, shared)
                start = position + 1
        children += split(start, high, shared)
        if shared == depth:  # the range parts right here: nothing more in common
            return children
        node = Segment(list(shareable[order[low]][depth:shared]), children=children)
        if len(node.tokens) * (node.sequences() - 1) >= min_saved:
            return [node]
        for child in children:
            child.tokens = node.tokens + child.tokens
        return children

    return split(0, len(sequences), 0) if sequences else []


def computed_tokens(segments: Sequence[Segment]) -> int:
    """Tokens the model runs for this forest (each segment once, padding not counted)."""
    return sum(len(segment.tokens) + computed_tokens(segment.children) for segment in segments)
