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
from dataclasses import fields, replace
from typing import Any

from caitool import defaults
from caitool.backends.base import Backend, BackendOptions, GenerationSettings, LazyBackend
from caitool.errors import InputError, OptionError
from caitool.records import read_records
from caitool.stages import STAGES, Stage, StageOptions
from caitool.stages.compare import parse_clamp


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
        direct: bool = False,
        revision_format: str = defaults.REVISION_FORMAT,
        cot: bool = False,
        clamp: str | tuple[float, float] | None = None,
        compare_temperature: float = defaults.COMPARE_TEMPERATURE,
        red_team_prompts: int = StageOptions.red_team_prompts,
        red_team_attempts: int = StageOptions.red_team_attempts,
        **backend_options: Any,
    ):
        names = parse_stages(stages)
        known = {f.name for f in fields(BackendOptions)} - {"backend", "model"}
        unknown = sorted(set(backend_options) - known)
        if unknown:
            raise OptionError(
                f"{', '.join(unknown)}: not an option of Pipeline (options: model, backend, constitution, "
                "max_new_tokens, temperature, top_p, seed, few_shot, num_responses, principles, "
                f"{', '.join(sorted(known))})"
            )
        _check_stage_options(
            names,
            direct=direct,
            revision_format=revision_format,
            cot=cot,
            clamp=clamp,
            compare_temperature=compare_temperature,
            red_team_prompts=red_team_prompts,
            red_team_attempts=red_team_attempts,
        )
        if isinstance(backend, Backend):
            if backend_options:
                raise OptionError(f"{', '.join(backend_options)}: not used with a loaded backend")
            self.backend: Backend = backend
        else:
            self.backend = LazyBackend(BackendOptions(backend=backend, model=model, **backend_options))
        settings = GenerationSettings(max_new_tokens, temperature, top_p, seed)
        options = StageOptions(
            settings=settings,
            constitution=constitution,
            examples=examples,
            few_shot=few_shot,
            num_responses=num_responses,
            principles=principles,
            direct=direct,
            revision_format=revision_format,
            cot=cot,
            clamp=parse_clamp(clamp, cot) if clamp is None or isinstance(clamp, str) else _bounds(clamp),
            red_team_prompts=red_team_prompts,
            red_team_attempts=red_team_attempts,
        )
        # As in the shell pipe, where `caitool compare` has its own --temperature (greedy by default):
        # compare's reasoning (cot) is sampled at compare_temperature, not at the answers' temperature.
        compare_options = replace(options, settings=replace(settings, temperature=compare_temperature))
        self.stages: list[Stage] = [
            STAGES[name].from_options(self.backend, compare_options if name == "compare" else options)
            for name in names
        ]

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


# Options that only one stage reads, and the value that means "not set".
_STAGE_ONLY = {
    "direct": ("revise", False),
    "revision_format": ("revise", defaults.REVISION_FORMAT),
    "cot": ("compare", False),
    "clamp": ("compare", None),
    "compare_temperature": ("compare", defaults.COMPARE_TEMPERATURE),
    "red_team_prompts": ("red-team", StageOptions.red_team_prompts),
    "red_team_attempts": ("red-team", StageOptions.red_team_attempts),
}


def _check_stage_options(names: list[str], **given: Any) -> None:
    """An option for a stage that is not in the pipeline would do nothing: refuse it."""
    for option, value in given.items():
        stage, unset = _STAGE_ONLY[option]
        if value != unset and stage not in names:
            raise OptionError(f"{option}: only the '{stage}' stage uses it, and it is not in the pipeline")


def _bounds(clamp: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(value) for value in clamp)
    return parse_clamp(f"{low},{high}", True) or (low, high)


def pipeline(
    records: Iterable[dict[str, Any]],
    stages: str | Sequence[str] = "sample | critique | revise",
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """Run ``stages`` over ``records`` on one model; see :class:`Pipeline` for the options."""
    return Pipeline(stages, **options)(records)
