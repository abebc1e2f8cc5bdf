"""Stages: iterator of records in, iterator of records out. No I/O of their own.

``STAGES`` is the one registry of the stages that run on a backend: the commands, :class:`caitool.Pipeline`
and ``eval`` build them through it, as ``STAGES[name].from_options(backend, StageOptions(...))``. (`score`
runs on a trained preference model, not a backend, and is built by its command.)
"""

from caitool.stages.base import GenerativeStage, Stage, StageOptions
from caitool.stages.compare import CompareStage
from caitool.stages.critique import CritiqueStage
from caitool.stages.red_team import RedTeamStage
from caitool.stages.revise import ReviseStage
from caitool.stages.sample import SampleStage

STAGES: dict[str, type[Stage]] = {
    "sample": SampleStage,
    "critique": CritiqueStage,
    "revise": ReviseStage,
    "compare": CompareStage,
    "red-team": RedTeamStage,
}

__all__ = [
    "STAGES",
    "CompareStage",
    "CritiqueStage",
    "GenerativeStage",
    "RedTeamStage",
    "ReviseStage",
    "SampleStage",
    "Stage",
    "StageOptions",
]
