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
from caitool.option_fields import spec_of
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

    Options mirror the commands' (``--model``, ``--backend``, ``--constitution``, ...): the shared ones below,
    any ``BackendOptions`` field, and each stage's own options by field name (``num_responses`` of `sample`,
    ``direct`` of `revise`, ``principles`` of `compare`, ...: see each stage's ``Options``), refused when no
    stage in the pipeline reads them. ``backend`` may also be a :class:`~caitool.backends.base.Backend` that
    is already loaded. The model loads on first use.
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
        compare_temperature: float = defaults.COMPARE_TEMPERATURE,
        **options: Any,
    ):
        names = parse_stages(stages)
        if compare_temperature != defaults.COMPARE_TEMPERATURE and "compare" not in names:
            raise OptionError(
                "compare_temperature: only the 'compare' stage uses it, and it is not in the pipeline"
            )
        own, backend_options = _split_options(names, options)
        if isinstance(backend, Backend):
            if backend_options:
                raise OptionError(f"{', '.join(backend_options)}: not used with a loaded backend")
            self.backend: Backend = backend
        else:
            self.backend = LazyBackend(BackendOptions(backend=backend, model=model, **backend_options))
        settings = GenerationSettings(max_new_tokens, temperature, top_p, seed)
        # As in the shell pipe, where `caitool compare` has its own --temperature (greedy by default):
        # compare's reasoning (cot) is sampled at compare_temperature, not at the answers' temperature.
        compare_settings = replace(settings, temperature=compare_temperature)
        self.stages: list[Stage] = [
            STAGES[name].from_options(
                self.backend,
                StageOptions(
                    compare_settings if name == "compare" else settings,
                    constitution,
                    examples,
                    few_shot,
                    own[name],
                ),
            )
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

        for line in read_records(jsonl_lines(records), self.stages[0].validate):
            yield line.record

    def close(self) -> None:
        self.backend.close()


def jsonl_lines(records: Iterable[dict[str, Any]]) -> Iterator[bytes]:
    """Python records as the JSONL lines a command would read; the Nth record is "line N" in an error."""
    for lineno, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise InputError(lineno, f"expected a dict, got {type(record).__name__}")
        try:
            yield json.dumps(record).encode() + b"\n"
        except (TypeError, ValueError) as error:
            raise InputError(lineno, f"not JSON-serialisable ({error})", "use JSON values only") from None


def _stage_fields() -> dict[str, list[str]]:
    """Each stage option a Python caller may set (not the command-only switches), and the stages reading
    it."""
    readers: dict[str, list[str]] = {}
    for name, stage in STAGES.items():
        for item in fields(stage.Options):
            spec = spec_of(item)
            if spec is None or not spec.command_only:
                readers.setdefault(item.name, []).append(name)
    return readers


def _split_options(names: list[str], options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Pipeline's remaining options into each stage's own options (by stage name) and the backend options;
    an option no stage of the pipeline reads would do nothing: refused."""
    backend_fields = {f.name for f in fields(BackendOptions)} - {"backend", "model"}
    readers = _stage_fields()
    unknown = sorted(set(options) - backend_fields - set(readers))
    if unknown:
        shared = "model, backend, constitution, examples, max_new_tokens, temperature, top_p, seed, few_shot"
        raise OptionError(
            f"{', '.join(unknown)}: not an option of Pipeline (options: {shared}, "
            f"{', '.join(sorted(readers))}, {', '.join(sorted(backend_fields))})"
        )
    for option, value in options.items():
        stages = readers.get(option, [])
        if stages and not set(stages) & set(names) and value != _default(stages[0], option):
            where = " or ".join(f"'{stage}'" for stage in stages)
            raise OptionError(f"{option}: only the {where} stage uses it, and it is not in the pipeline")
    own = {
        name: STAGES[name].Options(
            **{key: value for key, value in options.items() if name in readers.get(key, [])}
        )
        for name in names
    }
    return own, {key: value for key, value in options.items() if key in backend_fields}


def _default(stage: str, option: str) -> Any:
    return getattr(STAGES[stage].Options(), option)


def pipeline(
    records: Iterable[dict[str, Any]],
    stages: str | Sequence[str] = "sample | critique | revise",
    **options: Any,
) -> Iterator[dict[str, Any]]:
    """Run ``stages`` over ``records`` on one model; see :class:`Pipeline` for the options."""
    return Pipeline(stages, **options)(records)


def train(
    stage: str, records: Iterable[dict[str, Any]], *, output_dir: str, **options: Any
) -> list[dict[str, Any]]:
    """Run a training stage (``train-sl``, ``train-pm``, ``rl``: see ``TRAINERS``) on ``records`` in this
    process, as its command would, and return the records the command writes (the artifact record that
    names the model in ``output_dir``, and what the stage adds). ``options`` are the command's, by field
    name: its trainer's own (``model``, ``algo``, ``reward_model``, ...) and those every trainer takes
    (``epochs``, ``max_steps``, ``lora``, ...)."""
    import io

    from caitool.training.options import TrainOptions
    from caitool.training.registry import TRAINERS

    trainer = TRAINERS.get(stage)
    if trainer is None:
        raise OptionError(f"stage: unknown training stage '{stage}' (choose from: {', '.join(TRAINERS)})")
    own = {item.name for item in fields(trainer.Config)}
    shared = {item.name for item in fields(TrainOptions)} - {"output_dir"}
    if unknown := sorted(set(options) - own - shared):
        raise OptionError(
            f"{', '.join(unknown)}: not an option of {stage} (options: {', '.join(sorted(own | shared))})"
        )
    config = trainer.Config(**{key: value for key, value in options.items() if key in own})
    given = {key: value for key, value in options.items() if key in shared}
    train_options = TrainOptions(output_dir=output_dir, **{**trainer.option_defaults, **given})
    out = io.StringIO()
    trainer(config, train_options).run(io.BytesIO(b"".join(jsonl_lines(records))), out)
    return [json.loads(line) for line in out.getvalue().splitlines()]
