"""`revise`: rewrite the response in light of the last round's critique, or (``direct``) in one step.

A direct revision is the paper's critique-less revision: the principle is drawn as `critique` would draw it
(seeded by record id and round, fresh each round) and the model rewrites the answer without writing a
critique first. Its round is recorded as ``{"principle", "critique": null, "direct": true, ...}``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from caitool import defaults
from caitool.backends.base import Backend, GenerationSettings
from caitool.constitution import Constitution, CritiquePrinciple
from caitool.errors import InputError
from caitool.option_fields import option
from caitool.prompts import (
    direct_revision_chat,
    resolve_revision_format,
    revision_chat,
    revision_prefix,
    says_no_change,
)
from caitool.records import conversation, require_text, validate_conversation
from caitool.stages.base import (
    GenerativeStage,
    StageOptions,
    call_usage,
    load_stage_constitution,
    tokens_entry,
)
from caitool.stages.critique import check_rounds


@dataclass(frozen=True)
class ReviseOptions:
    direct: bool = option(
        False,
        "--direct",
        help="Revise without a critique: draw a principle (as critique would) and rewrite in one step.",
    )
    revision_format: str = option(
        defaults.REVISION_FORMAT,
        "--revision-format",
        help="How the rewrite is asked for after the critique: 'prefill' (the reply is begun for the model; "
        "with --backend openai it needs /v1/completions), 'plain', 'remind', or 'auto' (prefill, but plain "
        "with --backend openai). See docs/findings.md.",
    )


class ReviseStage(GenerativeStage):
    name = "revise"
    summary = (
        "Rewrite each `response` in light of the last critique (or, with --direct, of a principle drawn for "
        "this round, without a critique); keeps `initial_response`."
    )
    Options = ReviseOptions
    uses_constitution = True
    constitution: Constitution

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        settings: GenerationSettings,
        few_shot: int = defaults.FEW_SHOT,
        direct: bool = False,
        prompt_format: str = defaults.REVISION_FORMAT,
    ):
        super().__init__(backend, constitution, settings, few_shot)
        self.direct = direct
        self.prompt_format = resolve_revision_format(prompt_format, backend.name)

    @classmethod
    def from_options(cls, backend: Backend, options: StageOptions) -> ReviseStage:
        own = cls.own(options)
        constitution = load_stage_constitution(options)
        return cls(backend, constitution, options.settings, options.few_shot, own.direct, own.revision_format)

    def provenance(self) -> dict[str, Any]:
        info = super().provenance()
        if self.direct:
            info["direct"] = True
        else:
            info["prompt_format"] = self.prompt_format
        return info

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_conversation(record, lineno)
        require_text(record, "response", lineno, "pipe `caitool sample` output into `caitool critique`")
        rounds = check_rounds(record, lineno)
        if self.direct:
            if rounds and "revision" not in rounds[-1]:
                raise InputError(
                    lineno,
                    "the last round has a critique waiting for its revision",
                    "run `caitool revise` without --direct to finish it first",
                    "rounds",
                )
            return
        fix = "pipe `caitool critique` output into `caitool revise` (or revise without a critique: --direct)"
        if not rounds or "revision" in rounds[-1]:
            raise InputError(lineno, "no round is waiting for a revision", fix, "rounds")
        last = rounds[-1]
        if not isinstance(last.get("critique"), str) or not isinstance(last.get("principle"), str):
            raise InputError(lineno, "the last round needs string 'principle' and 'critique'", fix, "rounds")
        try:
            self.constitution.critique_principle(last["principle"])
        except KeyError:
            raise InputError(
                lineno,
                f"principle '{last['principle']}' is not in constitution '{self.constitution.name}'",
                "pass the same --constitution to critique and revise",
                "rounds",
            ) from None

    def process(self, batch: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.direct:
            self._open_direct_rounds(batch)
            todo = batch
        else:
            todo = [r for r in batch if not says_no_change(r["rounds"][-1]["critique"])]
        chats = [self._chat(record) for record in todo]
        revisions = dict(
            zip(
                (id(r) for r in todo),
                self.backend.generate(chats, self.settings, self._prefixes(len(chats))) if chats else [],
                strict=True,
            )
        )
        # A record whose critique asked for no change sent no request: it used no tokens.
        usage = dict(zip((id(r) for r in todo), call_usage(self.backend, len(chats)), strict=True))
        for record in batch:
            last = record["rounds"][-1]
            record.setdefault("initial_response", record["response"])
            revision = revisions.get(id(record), "")
            # An empty reply is the model failing, not the critique finding nothing: both keep the answer, but
            # the provenance says which, so `caitool stats` and the stage's summary can count the failures.
            empty_reply = id(record) in revisions and not revision.strip()
            if revision.strip():
                last["revision"] = revision
                last["revised"] = True
            else:
                last["revision"] = record["response"]
                last["revised"] = False
            record["response"] = last["revision"]
            tokens = (
                tokens_entry([usage[id(record)]]) if id(record) in usage else {"prompt": 0, "completion": 0}
            )
            self.tokens.add(tokens)
            extra = {"empty_reply": True} if empty_reply else {}
            self.stamp(record, principle=last["principle"], revised=last["revised"], tokens=tokens, **extra)
        return batch

    def _prefixes(self, count: int) -> list[str] | None:
        prefix = "" if self.direct else revision_prefix(self.prompt_format)
        return [prefix] * count if prefix else None

    def _open_direct_rounds(self, batch: list[dict[str, Any]]) -> None:
        """Start each record's next round with the principle `critique` would have drawn for it."""
        for record in batch:
            rounds = record.setdefault("rounds", [])
            principle = self.constitution.draw_critique(self.settings.seed, str(record["id"]), len(rounds))
            rounds.append({"principle": principle.id, "critique": None, "direct": True})

    def _chat(self, record: dict[str, Any]) -> list[dict[str, str]]:
        last = record["rounds"][-1]
        principle: CritiquePrinciple = self.constitution.critique_principle(last["principle"])
        if self.direct:
            return direct_revision_chat(
                conversation(record), record["response"], principle, self.constitution, self.few_shot
            )
        return revision_chat(
            conversation(record),
            record["response"],
            last["critique"],
            principle,
            self.constitution,
            self.few_shot,
            self.prompt_format,
        )
