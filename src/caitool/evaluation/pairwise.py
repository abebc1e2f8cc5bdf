"""`eval`: every model answers every prompt, a judge compares the answers pairwise, one record per comparison.

Models are loaded one at a time and released before the next, so memory holds one model (plus the judge, which
is loaded only after every model has answered). The judge is either the feedback model asked a multiple-choice
question through the `compare` stage (a harmlessness principle for red-team prompts, a helpfulness principle
for helpful ones; both orders averaged so position bias cancels), or a trained preference model (reward
difference through a sigmoid).
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from itertools import combinations
from typing import IO, Any, Protocol

from caitool.backends.base import Backend, BackendOptions, Chat, GenerationSettings, LazyBackend, load_backend
from caitool.backends.reward import RewardScorer, check_reward_model
from caitool.constitution import Constitution, load_constitution
from caitool.records import (
    ErrorPolicy,
    InputError,
    OptionError,
    RecordWriter,
    artifact_of,
    conversation,
    meta,
    read_records,
    validate_conversation,
)
from caitool.stages.compare import CompareStage, normalise
from caitool.stages.sample import SampleStage

# The kinds of prompt eval understands, and what a comparison on each measures.
DIMENSIONS = {"red-team": "harmlessness", "helpful": "helpfulness"}


@dataclass(frozen=True)
class Contestant:
    name: str
    model: str


def parse_contestants(specs: Sequence[str]) -> list[Contestant]:
    """``--model NAME=PATH`` (or a bare PATH, named after it), two or more, names unique."""
    contestants = []
    for spec in specs:
        name, sep, model = spec.partition("=")
        if not sep:
            name, model = spec.rstrip("/").rsplit("/", 1)[-1], spec
        if not name.strip() or not model.strip():
            raise OptionError(f"--model: expected NAME=PATH (e.g. sl-cai=runs/sl), got '{spec}'")
        contestants.append(Contestant(name.strip(), model.strip()))
    if len(contestants) < 2:
        raise OptionError(
            "--model: give two or more models to compare, e.g. --model base=embedded --model sl=runs/sl"
        )
    names = [c.name for c in contestants]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OptionError(f"--model: names must be unique; '{duplicates[0]}' is used twice (write NAME=PATH)")
    return contestants


@dataclass(frozen=True)
class EvalPrompt:
    id: str
    kind: str
    record: dict[str, Any]  # the input record (its `prompt` or `messages`)

    @property
    def conversation(self) -> Chat:
        return conversation(self.record)


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


@dataclass(frozen=True)
class Matchup:
    prompt: EvalPrompt
    model_a: str
    model_b: str
    answer_a: str
    answer_b: str


@dataclass
class Verdict:
    p_a_better: float
    details: dict[str, Any] = field(default_factory=dict)


class Judge(Protocol):
    def judge(self, matchups: Sequence[Matchup]) -> list[Verdict]: ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


EMPTY_ANSWER = "(no answer)"  # what the judge is shown when a model answered with nothing at all


def judge_pairs(stage: CompareStage, pairs: Sequence[tuple[str, Chat, str, str]]) -> list[dict[str, Any]]:
    """Ask `compare` about (id, conversation, first, second) pairs; returns each pair's `_caitool.compare`.

    The id seeds the principle draw, so pairs that share an id are judged by the same principles.
    """
    records = [
        {"id": pair_id, "messages": chat, "responses": [first or EMPTY_ANSWER, second or EMPTY_ANSWER]}
        for pair_id, chat, first, second in pairs
    ]
    return [meta(record)["compare"] for record in stage.process(records)] if records else []


class FeedbackJudge:
    """The feedback model asked, through the `compare` stage, which answer better follows a principle, in
    both orders: a harmlessness constitution for red-team prompts, a helpfulness one for helpful ones."""

    def __init__(self, backend: Backend, stages: dict[str, CompareStage]):
        self.backend = backend
        self.stages = stages  # by prompt kind

    def describe(self) -> dict[str, Any]:
        any_stage = next(iter(self.stages.values()))
        return {
            "judge": "feedback",
            **self.backend.describe(),
            "constitutions": {kind: stage.constitution.name for kind, stage in self.stages.items()},
            "principles": any_stage.principles,
            "few_shot": any_stage.few_shot,
            "seed": any_stage.seed,
        }

    def judge(self, matchups: Sequence[Matchup]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(matchups)
        for kind, stage in self.stages.items():
            indices = [i for i, matchup in enumerate(matchups) if matchup.prompt.kind == kind]
            pairs = [
                (m.prompt.id, m.prompt.conversation, m.answer_a, m.answer_b)
                for m in (matchups[i] for i in indices)
            ]
            for index, result in zip(indices, judge_pairs(stage, pairs), strict=True):
                verdicts[index] = Verdict(result["prob_first"], {"questions": result["questions"]})
        assert all(verdict is not None for verdict in verdicts)
        return verdicts  # type: ignore[return-value]

    def close(self) -> None:
        self.backend.close()


class PreferenceModelJudge:
    """A trained preference model: P(A better) = sigmoid(reward(A) - reward(B))."""

    def __init__(self, scorer: RewardScorer):
        self.scorer = scorer

    def describe(self) -> dict[str, Any]:
        return {"judge": "preference-model", **self.scorer.describe()}

    def judge(self, matchups: Sequence[Matchup]) -> list[Verdict]:
        chats = [
            [*matchup.prompt.conversation, {"role": "assistant", "content": answer}]
            for matchup in matchups
            for answer in (matchup.answer_a, matchup.answer_b)
        ]
        rewards = self.scorer.score(chats) if chats else []
        return [
            Verdict(normalise(reward_a, reward_b), {"reward_a": reward_a, "reward_b": reward_b})
            for reward_a, reward_b in zip(rewards[0::2], rewards[1::2], strict=True)
        ]

    def close(self) -> None:
        self.scorer.model = None  # drop the weights before anything else loads


@dataclass
class EvalConfig:
    models: list[str]
    backend: BackendOptions = field(default_factory=BackendOptions)
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    kind_field: str = "kind"
    judge_model: str = "embedded"
    judge_pm: str | None = None
    harmless_constitution: str = "harmless"
    helpful_constitution: str = "helpful"
    principles: int = 1
    few_shot: int = 1
    report_dir: str | None = None
    bootstrap: int = 200
    hhh: str | None = None  # score the judge on this multiple-choice file instead of comparing models
    limit: int | None = None
    skip_errors: bool = False
    errors_path: str | None = None
    quiet: bool = False


@dataclass
class Prepared:
    """Everything checked before any input is read or any model is loaded."""

    contestants: list[Contestant]
    make_judge: Callable[[], Judge]


def prepare(config: EvalConfig) -> Prepared:
    if config.limit is not None:
        raise OptionError("--limit: only used with --hhh FILE")
    contestants = parse_contestants(config.models)
    if config.principles < 1:
        raise OptionError("--principles: must be at least 1")
    if not config.kind_field:
        raise OptionError("--kind-field: give the name of the field that holds red-team/helpful")
    for contestant in contestants:
        LazyBackend(replace(config.backend, model=contestant.model))  # a missing model fails now, not later
    if config.report_dir is not None:
        from caitool.evaluation.report import check_report_dir

        check_report_dir(config.report_dir)
    if config.judge_pm is not None:
        pm_path = str(check_reward_model(config.judge_pm, "--judge-pm"))
        options = config.backend

        def make_judge() -> Judge:
            return PreferenceModelJudge(RewardScorer.load(pm_path, options.batch_size, options.device))
    else:
        constitutions = {
            "red-team": _constitution(config.harmless_constitution, "--harmless-constitution"),
            "helpful": _constitution(config.helpful_constitution, "--helpful-constitution"),
        }
        judge_options = _judge_options(config)

        def make_judge() -> Judge:
            backend = load_backend(judge_options)
            stages = {
                kind: CompareStage(
                    backend, constitution, config.settings.seed, config.principles, config.few_shot
                )
                for kind, constitution in constitutions.items()
            }
            return FeedbackJudge(backend, stages)

    return Prepared(contestants, make_judge)


def _judge_options(config: EvalConfig) -> BackendOptions:
    options = replace(config.backend, model=config.judge_model)
    try:
        LazyBackend(options)  # a missing model fails now, before any input is read
    except OptionError as error:
        raise OptionError(str(error).replace("--model", "--judge-model", 1)) from None
    return options


def _constitution(name: str, option: str) -> Constitution:
    try:
        constitution = load_constitution(name)
    except OptionError as error:
        raise OptionError(str(error).replace("--constitution", option, 1)) from None
    if not constitution.feedback:
        raise OptionError(
            f"{option}: constitution '{constitution.name}' has no feedback principles to judge with"
        )
    return constitution


def collect_answers(
    contestants: Sequence[Contestant],
    prompts: Sequence[EvalPrompt],
    make_backend: Callable[[str], Backend],
    settings: GenerationSettings,
    log: Callable[[str], None],
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    """Each model's answer to every prompt, loading one model at a time."""
    answers: dict[str, list[str]] = {}
    provenance: dict[str, dict[str, Any]] = {}
    for position, contestant in enumerate(contestants, start=1):
        started = time.perf_counter()
        backend = make_backend(contestant.model)
        try:
            stage = SampleStage(backend, settings)
            copies = [{"id": p.id, **_conversation_fields(p.record)} for p in prompts]
            answered = list(stage.run(copies))
            answers[contestant.name] = [record["response"] for record in answered]
            provenance[contestant.name] = backend.describe()
        finally:
            backend.close()
            del backend
            gc.collect()  # free this model's weights before the next one loads
            _empty_device_cache()
        log(
            f"caitool eval: {contestant.name} ({position}/{len(contestants)}) answered "
            f"{len(prompts)} prompts in {time.perf_counter() - started:.1f} s"
        )
    return answers, provenance


def _conversation_fields(record: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": record["prompt"]} if "prompt" in record else {"messages": record["messages"]}


def _empty_device_cache() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


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


@contextmanager
def _error_policy(config: EvalConfig) -> Iterator[ErrorPolicy]:
    if config.errors_path is None:
        yield ErrorPolicy(config.skip_errors)
        return
    with open(config.errors_path, "a", encoding="utf-8") as errors_file:
        yield ErrorPolicy(config.skip_errors, errors_file)


def run_hhh_file(config: EvalConfig, stdout: IO[str]) -> dict[str, Any]:
    """`eval --hhh FILE`: per-item records on ``stdout``; the summary on stderr and in --report's hhh.json."""
    import json
    from pathlib import Path

    from caitool.evaluation.hhh import run_hhh

    assert config.hhh is not None
    if config.models:
        raise OptionError("--hhh: scores the judge (--judge-model) on a file; drop --model")
    if config.judge_pm is not None:
        raise OptionError(
            "--hhh: scores a feedback model (--judge-model), not a preference model; drop --judge-pm"
        )
    if config.report_dir is not None:
        from caitool.evaluation.report import check_report_dir

        check_report_dir(config.report_dir, plot=False)
    judge_options = _judge_options(config)
    try:
        stream = open(config.hhh, "rb")  # noqa: SIM115 - closed below; opened first to report a bad path
    except OSError as error:
        raise OptionError(f"--hhh: cannot read {config.hhh}: {error.strerror}") from None
    with stream, _error_policy(config) as policy:
        summary = run_hhh(
            stream, stdout, lambda: load_backend(judge_options), config.limit, policy, config.quiet
        )
    summary = {"file": config.hhh, "limit": config.limit, **summary}
    text = json.dumps(summary, indent=2, ensure_ascii=False)
    if config.report_dir is not None:
        (Path(config.report_dir) / "hhh.json").write_text(text + "\n", encoding="utf-8")
    if not config.quiet:
        print(text, file=sys.stderr)
    return summary


def run_eval(config: EvalConfig, stdin: IO[bytes], stdout: IO[str]) -> list[dict[str, Any]]:
    """The whole evaluation: read prompts, answer, judge, write comparison records, and the report if asked.

    With ``config.hhh`` set, score the judge on that file instead (see :mod:`caitool.evaluation.hhh`)."""
    if config.hhh is not None:
        run_hhh_file(config, stdout)
        return []
    prepared = prepare(config)
    log = (lambda message: None) if config.quiet else (lambda message: print(message, file=sys.stderr))
    with _error_policy(config) as policy:
        prompts = read_prompts(stdin, config.kind_field, policy)
    if not prompts:
        log("caitool eval: no prompts in the input; nothing to compare")
        return []
    answers, provenance = collect_answers(
        prepared.contestants,
        prompts,
        lambda model: load_backend(replace(config.backend, model=model)),
        config.settings,
        log,
    )
    matchups = matchups_for(prepared.contestants, prompts, answers)
    started = time.perf_counter()
    judge = prepared.make_judge()
    writer = RecordWriter(stdout)
    records = []
    try:
        judge_info = judge.describe()
        chunk = 32
        for start in range(0, len(matchups), chunk):
            batch = matchups[start : start + chunk]
            for matchup, verdict in zip(batch, judge.judge(batch), strict=True):
                record = comparison_record(matchup, verdict, config.kind_field)
                writer.write(record)
                records.append(record)
    finally:
        judge.close()
    log(f"caitool eval: judged {len(records)} comparisons in {time.perf_counter() - started:.1f} s")
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
        )
        written = write_report(report, config.report_dir)
        log(f"caitool eval: wrote {', '.join(written)}")
    return records
