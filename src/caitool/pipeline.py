"""Several stages in one Python process, sharing one loaded model.

The shell pipe ``caitool sample | caitool critique | caitool revise`` starts a process, and loads the model,
per stage. From Python the same stages can run on one model::

    import caitool

    records = [{"prompt": "How do I get back at my neighbour?"}]
    for record in caitool.pipeline(records, "sample | critique | revise", max_new_tokens=64):
        print(record["rounds"][-1]["revision"])

Records go through exactly what the commands do (same validation, ids, provenance and seeds), so with the
same options the output equals the shell pipe's. Stages stream: each takes the records of the one before
it a window at a time, and records come out in input order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from caitool import defaults
from caitool.backends.base import Backend, BackendOptions, GenerationSettings, LazyBackend
from caitool.errors import InputError, OptionError
from caitool.records import read_records
from caitool.stages import STAGES, Stage, StageOptions


def parse_stages(stages: str | Sequence[str]) -> list[str]:
    """``"sample | critique | revise"`` or ``["sample", "critique", "revise"]`` into checked stage names."""
    names = [name.strip() for name in stages.split("|")] if isinstance(stages, str) else list(stages)
    if not names or not all(names):
        raise OptionError("stages: give at least one stage, e.g. 'sample | critique | revise'")
    for name in names:
        if name not in STAGES:
            raise OptionError(f"stages: unknown stage '{name}' (choose from: {', '.join(STAGES)})")
    return names


class Pipeline:
    """Stages built once over one backend; call it on records (any iterable of dicts) for an iterator.

    Options mirror the commands' (``--model``, ``--backend``, ``--constitution``, ...). ``backend`` may
    also be a :class:`~caitool.backends.base.Backend` that is already loaded. The model loads on first use.
    """

    def __init__(
        self,
        stages: str | Sequence[str] = "sample | critique | revise",
        *,
        model: str = BackendOptions.model,
        backend: str | Backend = BackendOptions.backend,
        constitution: str = defaults.CONSTITUTION,
        examples: str | None = None,
        max_new_tokens: int = GenerationSettings.max_new_tokens,
        temperature: float = GenerationSettings.temperature,
        top_p: float = GenerationSettings.top_p,
        seed: int = GenerationSettings.seed,
        few_shot: int = defaults.FEW_SHOT,
        num_responses: int = defaults.NUM_RESPONSES,
        principles: int = defaults.PRINCIPLES,
        **backend_options: Any,
    ):
        names = parse_stages(stages)
        if isinstance(backend, Backend):
            if backend_options:
                raise OptionError(f"{', '.join(backend_options)}: not used with a loaded backend")
            self.backend: Backend = backend
        else:
            self.backend = LazyBackend(BackendOptions(backend=backend, model=model, **backend_options))
        options = StageOptions(
            settings=GenerationSettings(max_new_tokens, temperature, top_p, seed),
            constitution=constitution,
            examples=examples,
            few_shot=few_shot,
            num_responses=num_responses,
            principles=principles,
        )
        self.stages: list[Stage] = [STAGES[name].from_options(self.backend, options) for name in names]

    def __call__(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        stream: Iterator[dict[str, Any]] = self._checked(records)
        for stage in self.stages:
            stream = stage.run(stream)
        return stream

    def _checked(self, records: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """The first stage's input checks and id assignment, exactly as for a JSONL line; the Nth record is
        "line N" in an error. The caller's dicts are not modified."""

        def lines() -> Iterator[bytes]:
            for lineno, record in enumerate(records, start=1):
                if not isinstance(record, dict):
                    raise InputError(lineno, f"expected a dict, got {type(record).__name__}")
                try:
                    yield json.dumps(record).encode() + b"\n"
                except (TypeError, ValueError) as error:
                    raise InputError(
                        lineno, f"not JSON-serialisable ({error})", "use JSON values only"
                    ) from None

        for line in read_records(lines(), self.stages[0].validate):
            yield line.record

    def close(self) -> None:
        self.backend.close()


def pipeline(
    records: Iterable[dict[str, Any]],
    stages: str | Sequence[str] = "sample | critique | revise",
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """Run ``stages`` over ``records`` on one model; see :class:`Pipeline` for the options."""
    return Pipeline(stages, **options)(records)
