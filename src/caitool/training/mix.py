"""`train-pm --mix FILE --mix-ratio R`: a second source of preference pairs mixed in at a stated ratio.

The paper's preference model learns from human helpfulness comparisons beside AI harmlessness labels. The
pairs on stdin are all used; pairs from FILE (any format a pair is read in, HH-RLHF transcripts included) are
drawn, seeded and without repeats, so that they make up the share R of the pairs trained on:
k = round(n · R / (1 − R)) for n pairs on stdin. FILE must hold at least k pairs; caitool does not repeat
pairs or drop stdin's to reach a ratio. What was mixed is recorded in the artifact (``mix``).
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any, TypeVar

from caitool.errors import InputError, OptionError
from caitool.records import artifact_of, read_records
from caitool.training.distributed import share_from_main
from caitool.training.io import InsufficientInput

T = TypeVar("T")


def check_mix(path: str | None, ratio: float | None) -> None:
    if path is None and ratio is None:
        return
    if path is None or ratio is None:
        raise OptionError("--mix and --mix-ratio go together: give the file and the share of pairs from it")
    if not 0.0 < ratio < 1.0:
        raise OptionError("--mix-ratio: the share of pairs drawn from --mix; must be above 0 and below 1")
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        raise OptionError(f"--mix: cannot read {path}")


def read_mix(path: str, validate: Callable[[dict[str, Any], int], None]) -> list[dict[str, Any]]:
    """Every pair in ``path`` (artifact records are passed over), read on the main process and shared."""

    def checked(record: dict[str, Any], lineno: int) -> None:
        if artifact_of(record) is None:
            validate(record, lineno)

    def produce() -> list[dict[str, Any]]:
        with open(path, "rb") as stream:
            try:
                lines = list(read_records(stream, checked))
            except InputError as error:  # say which input the line is in
                problem = f"--mix {path}: {error.problem}"
                raise InputError(error.lineno, problem, error.fix, error.field) from None
        return [line.record for line in lines if artifact_of(line.record) is None]

    return share_from_main(produce)


def mix_pairs(primary: list[T], extra: list[T], ratio: float, seed: int, path: str) -> tuple[list[T], dict]:
    """All of ``primary`` plus a seeded draw from ``extra``, ``ratio`` of the result; and what was mixed."""
    wanted = round(len(primary) * ratio / (1.0 - ratio))
    if wanted < 1:
        raise InsufficientInput(
            f"--mix-ratio {ratio:g}: {len(primary)} pairs on stdin call for no pairs from {path}; "
            "raise the ratio or give more pairs"
        )
    if wanted > len(extra):
        raise InsufficientInput(
            f"--mix-ratio {ratio:g}: {len(primary)} pairs on stdin call for {wanted} from {path}, which "
            f"holds {len(extra)}; lower --mix-ratio or give more pairs in --mix"
        )
    drawn = random.Random(f"mix:{seed}").sample(extra, wanted)
    info = {
        "file": path,
        "ratio": ratio,
        "pairs": wanted,
        "available": len(extra),
        "primary_pairs": len(primary),
        "share": wanted / (len(primary) + wanted),  # the ratio as realised, after rounding
    }
    return [*primary, *drawn], info
