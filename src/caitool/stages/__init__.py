"""Stages: iterator of records in, iterator of records out. No I/O of their own."""

from caitool.stages.base import Stage
from caitool.stages.critique import CritiqueStage
from caitool.stages.revise import ReviseStage
from caitool.stages.sample import SampleStage

__all__ = ["CritiqueStage", "ReviseStage", "SampleStage", "Stage"]
