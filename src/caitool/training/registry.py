"""``TRAINERS``: the one registry of the training stages. The commands (``cli/trainers.py``) and
:func:`caitool.train` are built from it; a new training stage is its module (a :class:`Trainer` subclass with
its ``Config``) and its line here."""

from __future__ import annotations

from caitool.training.base import Trainer
from caitool.training.pm import PMTrainer
from caitool.training.rl import RLTrainer
from caitool.training.sl import SLTrainer

TRAINERS: dict[str, type[Trainer]] = {"train-sl": SLTrainer, "train-pm": PMTrainer, "rl": RLTrainer}
