"""Key/value caches for running a prefix tree's segments on their parents' caches (the hf backend).

A batch of segments continues rows of the cache its parents' batch left (:class:`Past`). Two things keep
that cheap:

- **No padding carried down.** A parent batch is left-padded, so each of its rows has padding between its
  past and its own tokens. :func:`continue_rows` moves each chosen row's tokens to the right end of a fresh
  buffer, so a child attends over the longest row's tokens, not over the padding of every level above it.
- **One copy of the past per batch.** The buffer has room for the batch's own tokens after the past:
  :class:`SegmentLayer` writes them in place where transformers' ``DynamicLayer`` would concatenate (copying
  the past again), and the filled buffer is the cache the batch's children continue.

Positions are not touched: a row's next position counts only its real tokens, so every token sees exactly
the tokens and positions it has in its whole sequence.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from transformers.cache_utils import Cache, DynamicLayer


@dataclass
class Past:
    """The key/value cache a batch of segments left behind, for their children to run on: per layer (keys,
    values) of shape (rows, heads, length, head_dim), which cache positions hold tokens (padding does not),
    and the position each row's next token has in its sequence."""

    layers: list[tuple[Any, Any]]
    mask: Any
    next_position: Any

    def longest(self) -> int:
        """The most tokens (padding not counted) any row holds."""
        return int(self.mask.sum(1).max())


class SegmentLayer(DynamicLayer):
    """A layer's past of ``filled`` positions in buffers with room after it: ``update`` writes the segment's
    keys and values in place and returns the filled part."""

    def __init__(self, keys: Any, values: Any, filled: int):
        super().__init__()
        self.lazy_initialization(keys, values)
        self.keys, self.values, self.filled = keys, values, filled

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        keys: Any = self.keys
        values: Any = self.values
        end = self.filled + key_states.shape[-2]
        keys[:, :, self.filled : end] = key_states
        values[:, :, self.filled : end] = value_states
        self.filled = end
        return keys[:, :, :end], values[:, :, :end]

    def get_seq_length(self) -> int:
        return self.filled


def runs(flags: list[int]) -> list[tuple[int, int]]:
    """The [start, end) stretches of ones in ``flags``."""
    stretches = []
    start = None
    for position, flag in enumerate([*flags, 0]):
        if flag and start is None:
            start = position
        elif not flag and start is not None:
            stretches.append((start, position))
            start = None
    return stretches


def continue_rows(past: Past, rows: list[int], width: int) -> tuple[Cache, Any]:
    """A cache for a batch whose row i continues row ``rows[i]`` of ``past`` with ``width`` positions, and
    the mask of its past part: each row's tokens at the right end of the past part, padding (zeros) before.
    Rows should come grouped (equal rows next to each other): a group is copied with one broadcast copy per
    stretch of tokens."""
    masks = past.mask.tolist()
    length = max(sum(masks[row]) for row in rows)
    mask = past.mask.new_zeros((len(rows), length))
    copies = []  # (source row, first batch row, end batch row, source start, source end, destination)
    paddings = []  # (first batch row, end batch row, padded positions)
    first = 0
    for row, group in itertools.groupby(rows):
        end = first + len(list(group))
        destination = length - sum(masks[row])
        mask[first:end, destination:] = 1
        if destination:
            paddings.append((first, end, destination))
        for start, stop in runs(masks[row]):
            copies.append((row, first, end, start, stop, destination))
            destination += stop - start
        first = end
    layers: list[Any] = []
    for keys, values in past.layers:
        shape = (len(rows), keys.shape[1], length + width, keys.shape[3])
        new_keys, new_values = keys.new_empty(shape), values.new_empty(shape)
        for low, high, padding in paddings:  # masked, but zeros (not whatever the memory held) all the same
            new_keys[low:high, :, :padding] = 0
            new_values[low:high, :, :padding] = 0
        for row, low, high, start, stop, destination in copies:
            place = (slice(low, high), slice(None), slice(destination, destination + stop - start))
            new_keys[place] = keys[row : row + 1, :, start:stop]
            new_values[place] = values[row : row + 1, :, start:stop]
        layers.append(SegmentLayer(new_keys, new_values, length))
    return Cache(layers=layers), mask
