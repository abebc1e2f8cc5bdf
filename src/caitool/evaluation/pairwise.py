"""`eval`: every model answers every prompt, a judge compares the answers pairwise, one record per comparison.

Models are loaded one at a time and released before the next, so memory holds one model (and the judge,
loaded after every model has answered). The judge is the feedback model asked a multiple-choice question via
the `compare` stage (a harmlessness principle for red-team prompts, a helpfulness one for helpful ones; both
orders averaged so position bias cancels), or a trained preference model (reward difference, sigmoid).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import IO, Any

from caitool import defaults
from caitool.backends.base import Backend, BackendOptions, GenerationSettings, LazyBackend, load_backend
from caitool.backends.reward import RewardScorer, check_reward_model
from caitool.canaries.in_eval import check_judge_canaries_option, report_judge_canaries
from caitool.errors import InputError, OptionError
from caitool.evaluation.along_training import checkpoint_models, plot_along_steps
from caitool.evaluation.contestants import Contestant, each_model, parse_contestants
from caitool.evaluation.harms import absolute_scores, evasiveness, summary_lines
from caitool.evaluation.judges import (
    DIMENSIONS,
    EvalPrompt,
    FeedbackJudge,
    Judge,
    Matchup,
    PreferenceModelJudge,
    Verdict,
    feedback_constitution,
    judge_backend_options,
)
from caitool.records import ErrorPolicy, RecordWriter, artifact_of, meta, read_records, validate_conversation
from caitool.runner import RunOptions, error_policy
from caitool.stages import CompareStage, SampleStage, StageOptions


def read_prompts(
    stream: IO[bytes] | Iterable[bytes], kind_field: str, policy: ErrorPolicy
) -> list[EvalPrompt]:
    """All prompt records; each must name its kind (red-team or helpful) in ``kind_field``."""
    kinds = " or ".join(repr(k) for k in DIMENSIONS)
    fix = f'give each line a "{kind_field}" of {kinds} (or name the field with --kind-field)'

    def validate(record: dict[str, Any], lineno: int) -> None:
        if artifact_of(record) is not None:
            return
        validate_conversation(record, lineno)
        kind = record.get(kind_field)
        if kind not in DIMENSIONS:
            problem = f"missing field '{kind_field}'" if kind is None else f"unknown kind {kind!r}"
            raise InputError(lineno, problem, fix, kind_field)

    return [
        EvalPrompt(str(line.record["id"]), line.record[kind_field], line.record)
        for line in read_records(stream, validate, policy)
        if artifact_of(line.record) is None
    ]


@dataclass
class EvalConfig:
    models: list[str]
    backend: BackendOptions = field(default_factory=BackendOptions)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    kind_field: str = "kind"
    judge_model: str = "embedded"
    judge_backend: BackendOptions | None = None  # the judge's engine (model: judge_model); None: contestants'
    judge_pm: str | None = None
    harmless_constitution: str = "harmless"
    helpful_constitution: str = "helpful"
    principles: int = 1
    few_shot: int = 1
    report_dir: str | None = None
    bootstrap: int = 200
    judge_canaries: str = "auto"  # auto: check the judge on the shipped set of each judging constitution
    cot: bool = False  # the feedback judge reasons first (compare's --cot)
    clamp: tuple[float, float] | None = None  # bounds for each of the feedback judge's probabilities
    judge_temperature: float = defaults.COMPARE_TEMPERATURE  # of the judge's reasoning with cot
    evasiveness: bool = True  # ask the feedback model whether each red-team answer is evasive
    checkpoints: str | None = None  # an rl output (or its checkpoints directory): each checkpoint competes
    run: RunOptions = field(default_factory=RunOptions)  # bad lines, --errors, --quiet (never --resume)


@dataclass
class Prepared:
    """Everything checked before any input is read or any model is loaded."""

    contestants: list[Contestant]
    make_judge: Callable[[], Judge]
    feedback_options: BackendOptions | None  # the feedback model, if any measure needs it
    checkpoints: dict[str, tuple[str, int]] = field(default_factory=dict)  # step-N -> (path, N)


def prepare(config: EvalConfig) -> Prepared:
    found = checkpoint_models(config.checkpoints)  # none without --checkpoints
    contestants = parse_contestants([*config.models, *(f"{n}={p}" for n, (p, _) in found.items())])
    check_judge_canaries_option(config.judge_canaries)
    if config.principles < 1:
        raise OptionError("--principles: must be at least 1")
    if not config.kind_field:
        raise OptionError("--kind-field: give the name of the field that holds red-team/helpful")
    if config.judge_pm is not None and (config.cot or config.clamp is not None):
        raise OptionError(
            "--cot/--clamp: they shape the feedback judge's answer; --judge-pm judges by reward"
        )
    if not config.cot and config.judge_temperature != defaults.COMPARE_TEMPERATURE:
        raise OptionError("--judge-temperature: only the judge's --cot reasoning is sampled; add --cot")
    for contestant in contestants:
        LazyBackend(replace(config.backend, model=contestant.model))  # a missing model fails now, not later
    if config.report_dir is not None:
        from caitool.evaluation.report import check_report_dir

        check_report_dir(config.report_dir)
    judge_engine, own = config.judge_backend or config.backend, config.judge_backend is not None
    feedback_options = (
        judge_backend_options(judge_engine, config.judge_model, own)
        if config.judge_pm is None or config.evasiveness
        else None
    )
    if config.judge_pm is not None:
        pm_path = str(check_reward_model(config.judge_pm, "--judge-pm"))
        options = judge_engine

        def make_judge() -> Judge:
            return PreferenceModelJudge(RewardScorer.load(pm_path, options.batch_size, options.device))
    else:
        constitutions = {
            "red-team": feedback_constitution(config.harmless_constitution, "--harmless-constitution"),
            "helpful": feedback_constitution(config.helpful_constitution, "--helpful-constitution"),
        }
        judge_options = feedback_options
        assert judge_options is not None
        # The judge's own sampling settings, as `compare` has them: its --cot reasoning is greedy unless
        # --judge-temperature says otherwise; --temperature is the contestants'.
        judge_settings = replace(config.settings, temperature=config.judge_temperature)

        def make_judge() -> Judge:
            backend = load_backend(judge_options)
            stages = {
                kind: CompareStage.from_options(
                    backend,
                    StageOptions(
                        settings=judge_settings,
                        constitution=constitution,
                        few_shot=config.few_shot,
                        # the clamp as parsed from --clamp; None: none ('none'), even with cot
                        own=CompareStage.Options(
                            principles=config.principles, cot=config.cot, clamp=config.clamp or "none"
                        ),
                    ),
                )
                for kind, constitution in constitutions.items()
            }
            return FeedbackJudge(backend, stages)

    return Prepared(contestants, make_judge, feedback_options, found)


def collect_answers(
    contestants: Sequence[Contestant],
    prompts: Sequence[EvalPrompt],
    options: BackendOptions,
    settings: GenerationSettings,
    log: Callable[[str], None],
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Each model's answer to every prompt, loading one model at a time."""
    provenance: dict[str, dict[str, Any]] = {}

    def answer(contestant: Contestant, backend: Backend) -> list[str]:
        started = time.perf_counter()
        stage = SampleStage.from_options(backend, StageOptions(settings=settings))
        answered = list(stage.run([{"id": p.id, **_conversation_fields(p.record)} for p in prompts]))
        provenance[contestant.name] = backend.describe()
        log(
            f"caitool eval: {contestant.name} ({len(provenance)}/{len(contestants)}) answered "
            f"{len(prompts)} prompts in {time.perf_counter() - started:.1f} s"
        )
        return [record["response"] for record in answered]

    return each_model(contestants, options, answer), provenance


def _conversation_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": record["prompt"]} if "prompt" in record else {"messages": record["messages"]}


def matchups_for(
    contestants: Sequence[Contestant], prompts: Sequence[EvalPrompt], answers: dict[str, list[str]]
) -> list[Matchup]:
    """Every pair of models on every prompt; the model given first is `model_a`."""
    return [
        Matchup(prompt, a.name, b.name, answers[a.name][index], answers[b.name][index])
        for index, prompt in enumerate(prompts)
        for a, b in combinations(contestants, 2)
    ]


def comparison_record(matchup: Matchup, verdict: Verdict, kind_field: str) -> dict[str, Any]:
    p = verdict.p_a_better
    winner = matchup.model_a if p > 0.5 else matchup.model_b if p < 0.5 else "tie"
    record: dict[str, Any] = {
        "id": f"{matchup.prompt.id}:{matchup.model_a}:{matchup.model_b}",
        "prompt_id": matchup.prompt.id,
        kind_field: matchup.prompt.kind,
        **_conversation_fields(matchup.prompt.record),
        "model_a": matchup.model_a,
        "model_b": matchup.model_b,
        "answer_a": matchup.answer_a,
        "answer_b": matchup.answer_b,
        "p_a_better": p,
        "winner": winner,
    }
    meta(record)["eval"] = {"dimension": DIMENSIONS[matchup.prompt.kind], **verdict.details}
    return record


def run_eval(config: EvalConfig, stdin: IO[bytes], stdout: IO[str]) -> list[dict[str, Any]]:
    """The whole evaluation: read prompts, answer, judge, write comparison records, the report if asked."""
    prepared = prepare(config)
    quiet = config.run.quiet
    log = (lambda message: None) if quiet else (lambda message: print(message, file=sys.stderr))
    with error_policy(config.run) as policy:
        prompts = read_prompts(stdin, config.kind_field, policy)
    if not prompts:
        log("caitool eval: no prompts in the input; nothing to compare")
        return []
    answers, provenance = collect_answers(
        prepared.contestants,
        prompts,
        config.backend,
        config.settings,
        log,
    )
    matchups = matchups_for(prepared.contestants, prompts, answers)
    started = time.perf_counter()
    judge = prepared.make_judge()
    writer = RecordWriter(stdout)
    records = []
    evasion: dict[str, dict[str, Any]] | None = None
    absolute: dict[str, dict[str, Any]] | None = None
    try:
        judge_info = judge.describe()
        canaries = report_judge_canaries(judge, quiet) if config.judge_canaries != "none" else {}
        chunk = 32
        for start in range(0, len(matchups), chunk):
            batch = matchups[start : start + chunk]
            for matchup, verdict in zip(batch, judge.judge(batch), strict=True):
                record = comparison_record(matchup, verdict, config.kind_field)
                writer.write(record)
                records.append(record)
        # The absolute measures reuse the judge's model while it is loaded.
        if isinstance(judge, PreferenceModelJudge):
            absolute = absolute_scores(judge.scorer, prompts, answers, config.bootstrap, config.settings.seed)
        elif isinstance(judge, FeedbackJudge) and config.evasiveness:
            evasion = evasiveness(judge.backend, prompts, answers)
    finally:
        judge.close()
    if evasion is None and config.evasiveness and prepared.feedback_options is not None:
        backend = load_backend(prepared.feedback_options)  # --judge-pm: the feedback model, after the PM
        try:
            evasion = evasiveness(backend, prompts, answers)
        finally:
            backend.close()
    log(f"caitool eval: judged {len(records)} comparisons in {time.perf_counter() - started:.1f} s")
    for line in summary_lines(evasion, absolute):
        log(line)
    if config.report_dir is not None:
        from caitool.evaluation.report import build_report, write_report

        models = [
            {"name": c.name, "path": c.model, **provenance.get(c.name, {})} for c in prepared.contestants
        ]
        report = build_report(
            records,
            models,
            judge_info,
            config.kind_field,
            bootstrap=config.bootstrap,
            seed=config.settings.seed,
            judge_canaries=canaries,
            evasiveness=evasion,
            absolute=absolute,
        )
        report["steps"] = {name: step for name, (_, step) in prepared.checkpoints.items()}
        written = write_report(report, config.report_dir) + plot_along_steps(report, config.report_dir)
        log(f"caitool eval: wrote {', '.join(written)}")
    return records
