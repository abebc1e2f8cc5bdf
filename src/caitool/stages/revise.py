"""`revise`: rewrite the response in light of the last round's critique."""

from __future__ import annotations

from typing import Any

from caitool.constitution import Constitution
from caitool.errors import InputError
from caitool.prompts import revision_chat, says_no_change
from caitool.records import conversation, require_text, validate_conversation
from caitool.stages.base import GenerativeStage
from caitool.stages.critique import check_rounds


class ReviseStage(GenerativeStage):
    name = "revise"
    uses_constitution = True
    constitution: Constitution

    def validate(self, record: dict[str, Any], lineno: int) -> None:
        validate_conversation(record, lineno)
        require_text(record, "response", lineno, "pipe `caitool sample` output into `caitool critique`")
        rounds = check_rounds(record, lineno)
        fix = "pipe `caitool critique` output into `caitool revise`"
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
        todo = [r for r in batch if not says_no_change(r["rounds"][-1]["critique"])]
        chats = []
        for record in todo:
            last = record["rounds"][-1]
            principle = self.constitution.critique_principle(last["principle"])
            chats.append(
                revision_chat(
                    conversation(record),
                    record["response"],
                    last["critique"],
                    principle,
                    self.constitution,
                    self.few_shot,
                )
            )
        revisions = dict(
            zip(
                (id(r) for r in todo),
                self.backend.generate(chats, self.settings) if chats else [],
                strict=True,
            )
        )
        for record in batch:
            last = record["rounds"][-1]
            record.setdefault("initial_response", record["response"])
            revision = revisions.get(id(record), "")
            if revision.strip():
                last["revision"] = revision
                last["revised"] = True
            else:
                # The critique found nothing to change (or the model returned nothing): keep the answer.
                last["revision"] = record["response"]
                last["revised"] = False
            record["response"] = last["revision"]
            self.stamp(record, principle=last["principle"], revised=last["revised"])
        return batch
