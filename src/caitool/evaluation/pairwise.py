"""`eval`: every model answers every prompt, a judge compares the answers pairwise, one record per comparison.

Models are loaded one at a time and released before the next, so memory holds one model (and the judge,
loaded after every model has answered). The judge is the feedback model asked a multiple-choice question via
the `compare` stage (a harmlessness principle for red-team prompts, a helpfulness one for helpful ones; both
orders averaged so position bias cancels), or a trained preference model (reward difference, sigmoid).

The module is long because :class:`EvalConfig` declares each of eval's own options beside its field (flag,
default, help) and the module drives the command end to end; the judging itself is in judges.py.
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
from caitool.option_fields import option
from caitool.records import ErrorPolicy, RecordWriter, artifact_of, meta, read_records, validate_conversation
from caitool.runner import RunOptions, error_policy
from caitool.stages import CompareStage, SampleStage, StageOptions
from caitool.stages.compare import parse_clamp


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
    """What `eval` is given. The fields made with :func:`option` are its command-line options, declared once
    here (flag, default, help); the engines, sampling and record options come from their own groups."""

    # Named as on the command line: recipes keep eval's --model to eval's own section (cli/recipes.py).
    model: list[str] | None = option(
        None,
        "--model",
        "-m",
        help="NAME=PATH of a model to evaluate (PATH: 'embedded', a model directory, ...); two or more.",
    )
    checkpoints: str | None = option(
        None,
        help="An `rl --save-steps N --keep-checkpoints` output directory (or its -checkpoints "
        "directory): every checkpoint competes as step-N; --report adds steps.png (Elo against step).",
    )
    ratings: str | None = option(
        None,
        help="Human verdicts on pairs from `caitool export --format ratings` (pairs.csv or .jsonl with "
        "'preferred' filled in): fit Elo from them (and the AI judge's, from the key) instead of "
        "running models; needs --ratings-key.",
    )
    ratings_key: str | None = option(
        None, help="The key.jsonl written with the rated pairs (models, AI verdicts)."
    )
    kind_field: str = option("kind", help="Field that says whether a prompt is 'red-team' or 'helpful'.")
    judge_pm: str | None = option(
        None, help="Judge with this preference model (from `caitool train-pm`) instead of --judge-model."
    )
    harmless_constitution: str = option(
        "harmless", help="Constitution whose feedback principles judge answers to red-team prompts."
    )
    helpful_constitution: str = option(
        "helpful", help="Constitution whose feedback principles judge answers to helpful prompts."
    )
    principles: int = option(
        defaults.PRINCIPLES, min=1, help="Feedback principles per prompt (the judge's answers are averaged)."
    )
    few_shot: int = option(
        defaults.FEW_SHOT, min=0, help="Few-shot examples from the constitution to put in each prompt."
    )
    report_dir: str | None = option(
        None, "--report", help="Directory for report.json and plot.png (win rates, Elo)."
    )
    bootstrap: int = option(200, min=0, help="Bootstrap resamples for the Elo and mean-reward intervals.")
    cot: bool = option(
        False, "--cot", help="The feedback judge reasons first, then answers (as `compare --cot`)."
    )
    clamp: str | None = option(
        None,
        help="Clamp each judge probability to LOW,HIGH (default 0.4,0.6 with --cot, none without; 'none').",
    )
    judge_temperature: float = option(
        defaults.COMPARE_TEMPERATURE,
        min=0.0,
        help="Sampling temperature of the judge's --cot reasoning (0: greedy).",
    )
    evasiveness: bool = option(
        True,
        help="Ask the feedback model (--judge-model) whether each red-team answer is evasive; with "
        "--judge-pm it is loaded after the preference model.",
    )
    judge_canaries: str = option(
        "auto",
        help="auto: first check the judge on the shipped canary pairs of each constitution it judges "
        "with (accuracy, interval, position bias in the report and on stderr); none: skip.",
    )
    backend: BackendOptions = field(default_factory=BackendOptions)  # the contestants' (each its own model)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    judge_model: str = "embedded"
    judge_backend: BackendOptions | None = None  # the judge's engine (model: judge_model); None: contestants'
    run: RunOptions = field(default_factory=RunOptions)  # bad lines, --errors, --quiet (never --resume)

    @property
    def models(self) -> list[str]:
        """The contestants given with --model (NAME=PATH)."""
        return self.model or []


@dataclass
class Prepared:
    """Everything checked before any input is read or any model is loaded."""

    contestants: list[Contestant]
    make_judge: Callable[[], Judge]
    feedback_options: BackendOptions | None  # the feedback model, if any measure needs it
    checkpoints: dict[str, tuple[str, int]] = field(default_factory=dict)  # step-N -> (path, N)


def check_options(config: EvalConfig, bounds: tuple[float, float] | None) -> None:
    """Refuse option values and combinations that cannot work, before anything is loaded; ``bounds``: the
    parsed --clamp."""
    check_judge_canaries_option(config.judge_canaries)
    if config.principles < 1:
        raise OptionError("--principles: must be at least 1")
    if not config.kind_field:
        raise OptionError("--kind-field: give the name of the field that holds red-team/helpful")
    if config.judge_pm is not None and (config.cot or bounds is not None):
        raise OptionError(
            "--cot/--clamp: they shape the feedback judge's answer; --judge-pm judges by reward"
        )
    if not config.cot and config.judge_temperature != defaults.COMPARE_TEMPERATURE:
        raise OptionError("--judge-temperature: only the judge's --cot reasoning is sampled; add --cot")


def prepare(config: EvalConfig) -> Prepared:
    bounds = parse_clamp(config.clamp, config.cot)
    found = checkpoint_models(config.checkpoints)  # none without --checkpoints
    contestants = parse_contestants([*config.models, *(f"{n}={p}" for n, (p, _) in found.items())])
    check_options(config, bounds)
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

        def make_judge() -> Judge:
            return PreferenceModelJudge(
                RewardScorer.load(pm_path, judge_engine.batch_size, judge_engine.device)
            )

        return Prepared(contestants, make_judge, feedback_options, found)
    assert feedback_options is not None
    return Prepared(contestants, _feedback_judge(config, feedback_options), feedback_options, found)


def _feedback_judge(config: EvalConfig, options: BackendOptions) -> Callable[[], Judge]:
    """What loads the feedback judge: one `compare` stage per kind of prompt, on the judge's model."""
    constitutions = {
        "red-team": feedback_constitution(config.harmless_constitution, "--harmless-constitution"),
        "helpful": feedback_constitution(config.helpful_constitution, "--helpful-constitution"),
    }
    # The judge's own sampling settings, as `compare` has them: its --cot reasoning is greedy unless
    # --judge-temperature says otherwise; --temperature is the contestants'.
    settings = replace(config.settings, temperature=config.judge_temperature)
    asking = CompareStage.Options(principles=config.principles, cot=config.cot, clamp=config.clamp)
    asked = {
        kind: StageOptions(settings=settings, constitution=c, few_shot=config.few_shot, own=asking)
        for kind, c in constitutions.items()
    }

    def make_judge() -> Judge:
        backend = load_backend(options)
        return FeedbackJudge(backend, {k: CompareStage.from_options(backend, o) for k, o in asked.items()})

    return make_judge


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


@dataclass
class Judged:
    """What the judge made of the answers: the comparison records and the absolute measures taken."""

    judge: dict[str, Any]  # the judge's description
    canaries: dict[str, Any]  # its canary checks, per kind of prompt (empty: not checked)
    records: list[dict[str, Any]] = field(default_factory=list)
    evasion: dict[str, dict[str, Any]] | None = None
    absolute: dict[str, dict[str, Any]] | None = None


JUDGE_CHUNK = 32  # matchups judged (and their records written) at a time


def judge_answers(
    config: EvalConfig,
    prepared: Prepared,
    prompts: Sequence[EvalPrompt],
    answers: dict[str, list[str]],
    writer: RecordWriter,
) -> Judged:
    """Every pair of answers judged, each record written as it comes; then, while the judge's model is
    loaded, the absolute measures (and, after a preference-model judge, the feedback model's evasiveness)."""
    matchups = matchups_for(prepared.contestants, prompts, answers)
    judge = prepared.make_judge()
    try:
        check = config.judge_canaries != "none"
        judged = Judged(judge.describe(), report_judge_canaries(judge, config.run.quiet) if check else {})
        for start in range(0, len(matchups), JUDGE_CHUNK):
            batch = matchups[start : start + JUDGE_CHUNK]
            for matchup, verdict in zip(batch, judge.judge(batch), strict=True):
                record = comparison_record(matchup, verdict, config.kind_field)
                writer.write(record)
                judged.records.append(record)
        if isinstance(judge, PreferenceModelJudge):
            judged.absolute = absolute_scores(
                judge.scorer, prompts, answers, config.bootstrap, config.settings.seed
            )
        elif isinstance(judge, FeedbackJudge) and config.evasiveness:
            judged.evasion = evasiveness(judge.backend, prompts, answers)
    finally:
        judge.close()
    if judged.evasion is None and config.evasiveness and prepared.feedback_options is not None:
        backend = load_backend(prepared.feedback_options)  # --judge-pm: the feedback model, after the PM
        try:
            judged.evasion = evasiveness(backend, prompts, answers)
        finally:
            backend.close()
    return judged


def write_eval_report(
    config: EvalConfig, prepared: Prepared, provenance: dict[str, dict[str, Any]], judged: Judged
) -> list[str]:
    """report.json, plot.png and, with --checkpoints, steps.png in --report; returns the paths written."""
    from caitool.evaluation.report import build_report, write_report

    assert config.report_dir is not None
    models = [{"name": c.name, "path": c.model, **provenance.get(c.name, {})} for c in prepared.contestants]
    report = build_report(
        judged.records,
        models,
        judged.judge,
        config.kind_field,
        bootstrap=config.bootstrap,
        seed=config.settings.seed,
        judge_canaries=judged.canaries,
        evasiveness=judged.evasion,
        absolute=judged.absolute,
    )
    report["steps"] = {name: step for name, (_, step) in prepared.checkpoints.items()}
    return write_report(report, config.report_dir) + plot_along_steps(report, config.report_dir)


def run_eval(config: EvalConfig, stdin: IO[bytes], stdout: IO[str]) -> list[dict[str, Any]]:
    """The whole evaluation: read prompts, answer, judge, write comparison records, the report if asked."""
    prepared = prepare(config)
    log = (lambda message: None) if config.run.quiet else (lambda message: print(message, file=sys.stderr))
    with error_policy(config.run) as policy:
        prompts = read_prompts(stdin, config.kind_field, policy)
    if not prompts:
        log("caitool eval: no prompts in the input; nothing to compare")
        return []
    answers, provenance = collect_answers(prepared.contestants, prompts, config.backend, config.settings, log)
    started = time.perf_counter()
    judged = judge_answers(config, prepared, prompts, answers, RecordWriter(stdout))
    log(f"caitool eval: judged {len(judged.records)} comparisons in {time.perf_counter() - started:.1f} s")
    for line in summary_lines(judged.evasion, judged.absolute):
        log(line)
    if config.report_dir is not None:
        written = write_eval_report(config, prepared, provenance, judged)
        log(f"caitool eval: wrote {', '.join(written)}")
    return judged.records
