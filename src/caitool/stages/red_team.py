"""`red-team`: grow a red-team prompt set from a few seed prompts by few-shot prompting the model.

For each seed record the model is shown that seed and a few others from the run (a seeded draw) and asked
for new prompts of the same kind, one per line. Lines are cleaned of numbering and deduplicated after
normalisation (case, punctuation, spacing) against every seed and every prompt already written in the run.
A seed whose model calls yield fewer than ``n`` usable prompts is asked again, with a different draw of
examples, up to ``attempts`` calls; what is still missing is recorded (``shortfall``) and reported.

Unlike the other stages it writes several records per input: ``n`` new records ``{"id", "prompt",
"_caitool"}`` (plus the seed's ``kind``, if it had one), with ids ``SEEDID-rtN``.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Any

from caitool.backends.base import Backend, GenerationSettings
from caitool.errors import InputError, OptionError
from caitool.option_fields import option
from caitool.prompts import red_team_chat
from caitool.records import require_text
from caitool.stages.base import GenerativeStage, StageOptions

EXAMPLES = 5  # prompts shown per request: the seed itself and up to four others from the run
_LIST_MARKER_RE = re.compile(r"^\s*(?:\d+\s*[.):\]]|[-*•]|\(\d+\))\s*")
_NORMALISE_RE = re.compile(r"[\W_]+")
MIN_CHARS = 12  # shorter lines are fragments ("Sure!", "Here you go:"), not prompts
MAX_CHARS = 600


def normalise(text: str) -> str:
    """The form prompts are deduplicated in: lower case, apostrophes dropped ("neighbour's" and
    "neighbours" alike), other punctuation and spacing collapsed."""
    return _NORMALISE_RE.sub(" ", text.casefold().replace("'", "").replace("’", "")).strip()


def parse_prompt_list(text: str) -> list[str]:
    """The prompts in a model's reply: one per line, list markers and wrapping quotes removed; lines that
    are too short or too long to be a prompt, or that end in a colon (a heading), are dropped."""
    prompts = []
    for line in text.splitlines():
        cleaned = _LIST_MARKER_RE.sub("", line).strip().strip('"“”').strip()
        if MIN_CHARS <= len(cleaned) <= MAX_CHARS and not cleaned.endswith(":"):
            prompts.append(cleaned)
    return prompts


@dataclass(frozen=True)
class RedTeamOptions:
    red_team_prompts: int = option(
        4, "-n", "--num-prompts", min=1, help="New prompts to write per seed prompt."
    )
    red_team_attempts: int = option(
        3,
        "--attempts",
        min=1,
        help="Model calls per seed before the prompts still missing are reported as a shortfall.",
    )


class RedTeamStage(GenerativeStage):
    name = "red-team"
    summary = (
        "Write N new red-team prompts per seed `prompt`, deduplicated against the seeds and each other;\n"
        "    each is a record {id, prompt, _caitool} naming its seed."
    )
    Options = RedTeamOptions
    expands = True
    resumable = False  # it writes new records: nothing of an earlier output to copy
    window = 16

    def __init__(self, backend: Backend, settings: GenerationSettings, n: int = 4, attempts: int = 3):
        if n < 1:
            raise OptionError("-n: must be at least 1")
        if attempts < 1:
            raise OptionError("--attempts: must be at least 1")
        super().__init__(backend, None, settings)
        self.n = n
        self.attempts = attempts
        self.seen: set[str] = set()  # normalised seeds and outputs of the whole run
        self.pool: list[tuple[str, str]] = []  # (id, prompt) of every seed so far, the examples' source
        self.shortfalls: dict[str, int] = {}  # seed id -> prompts missing after every attempt

    @classmethod
    def from_options(cls, backend: Backend, options: StageOptions) -> RedTeamStage:  # type: ignore[override]
        own = cls.own(options)
        return cls(backend, options.settings, own.red_team_prompts, own.red_team_attempts)

    def provenance(self) -> dict[str, Any]:
        return {**super().provenance(), "requested": self.n, "attempts": self.attempts}

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        if "prompt" in record and not isinstance(record["prompt"], str):
            raise InputError(
                lineno,
                "a seed's 'prompt' must be a string",
                "give each seed a one-turn text prompt",
                "prompt",
            )
        require_text(record, "prompt", lineno, 'give each seed line a "prompt" string (a red-team request)')

    def notes(self) -> list[str]:
        if not self.shortfalls:
            return []
        missing = sum(self.shortfalls.values())
        listed = ", ".join(f"{seed} ({count})" for seed, count in list(self.shortfalls.items())[:10])
        more = " ..." if len(self.shortfalls) > 10 else ""
        return [
            f"caitool red-team: {missing} of {self.n * len(self.pool)} prompts ({self.n} per seed) missing "
            f"after {self.attempts} attempt(s) per seed: {listed}{more}; raise --max-new-tokens or "
            "--attempts, or use a stronger --model"
        ]

    def process(self, batch: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:  # type: ignore[override]
        for record in batch:
            self.pool.append((str(record["id"]), record["prompt"]))
            self.seen.add(normalise(record["prompt"]))
        found: list[list[tuple[str, int, list[str]]]] = [[] for _ in batch]  # (prompt, attempt, example ids)
        for attempt in range(1, self.attempts + 1):
            waiting = [index for index, prompts in enumerate(found) if len(prompts) < self.n]
            if not waiting:
                break
            shown = [self._examples(batch[index], attempt) for index in waiting]
            chats = [
                red_team_chat([text for _id, text in examples], self.n - len(found[index]))
                for index, examples in zip(waiting, shown, strict=True)
            ]
            replies = self.backend.generate(chats, self.settings)
            for index, examples, reply in zip(waiting, shown, replies, strict=True):
                for prompt in parse_prompt_list(reply):
                    key = normalise(prompt)
                    if len(found[index]) < self.n and key not in self.seen:
                        self.seen.add(key)
                        found[index].append((prompt, attempt, [example_id for example_id, _ in examples]))
        return [self._records(record, prompts) for record, prompts in zip(batch, found, strict=True)]

    def _examples(self, record: dict[str, Any], attempt: int) -> list[tuple[str, str]]:
        """The seed itself first, then a seeded draw of others; a new draw on every attempt."""
        seed_id = str(record["id"])
        others = [entry for entry in self.pool if entry[0] != seed_id]
        rng = random.Random(f"red-team:{self.settings.seed}:{seed_id}:{attempt}")
        return [(seed_id, record["prompt"]), *rng.sample(others, min(EXAMPLES - 1, len(others)))]

    def _records(
        self, seed: dict[str, Any], prompts: list[tuple[str, int, list[str]]]
    ) -> list[dict[str, Any]]:
        seed_id = str(seed["id"])
        shortfall = self.n - len(prompts)
        if shortfall:
            self.shortfalls[seed_id] = shortfall
        out = []
        for number, (prompt, attempt, example_ids) in enumerate(prompts, start=1):
            record: dict[str, Any] = {"id": f"{seed_id}-rt{number}", "prompt": prompt}
            if "kind" in seed:
                record["kind"] = seed["kind"]
            self.stamp(record, seed_id=seed_id, seed_ids=example_ids, attempt=attempt, shortfall=shortfall)
            out.append(record)
        return out
