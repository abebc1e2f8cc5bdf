"""Several processes (``torchrun``/``accelerate launch``): which one this is, and handing what the main
process read to the others. Progress goes to stderr (``log``), prefixed with the stage.

A training stage runs the same code on every process. Every rank inherits the same stdin, so only the main
process reads it and shares the records; only the main process writes records and the final model.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

from caitool.errors import CaitoolError

T = TypeVar("T")


def log(stage: str, message: str) -> None:
    print(f"caitool {stage}: {message}", file=sys.stderr, flush=True)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return process_rank() == 0


def cpu_processes() -> bool:
    """Several processes and no GPU: accelerate only forms a (gloo) process group on CPU when told so."""
    import torch

    return world_size() > 1 and not torch.cuda.is_available()


class SharedError(CaitoolError):
    """An error the main process hit while reading, re-raised on the other processes (same exit code)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def share_from_main(produce: Callable[[], T]) -> T:
    """Run ``produce`` on the main process only and hand its result (or its error) to every process.

    Every rank of a launcher inherits the same stdin; if each read it, they would split the lines
    between them.
    """
    if world_size() == 1:
        return produce()
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    # Join the process group the launcher set up, as the trainer will later (gloo on CPU, nccl on GPUs).
    state = PartialState(cpu=cpu_processes())
    payload: list[Any] = [None]
    failure: BaseException | None = None
    if state.is_main_process:
        try:
            payload = [("ok", produce())]
        except CaitoolError as error:
            failure, payload = error, [("error", (str(error), error.exit_code))]
        except Exception as error:  # the others must not wait for records that never come
            failure, payload = error, [("error", (f"the main process failed: {error!r}", 1))]
    broadcast_object_list(payload, from_process=0)
    if failure is not None:
        raise failure
    status, value = payload[0]
    if status == "error":
        raise SharedError(*value)
    return value  # type: ignore[no-any-return]
