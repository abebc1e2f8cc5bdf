"""Win rates and Elo scores from soft pairwise outcomes.

An outcome is "model A beat model B with probability p" (a judge's soft label, not a hard win). Elo
scores are a Bradley-Terry fit to those outcomes: P(A beats B) = 1 / (1 + 10 ** ((elo_B - elo_A) / 400)),
fitted by maximum likelihood with the minorise-maximise iteration (Hunter 2004), where a soft outcome counts
p of a win for A and 1 - p for B. Each pair also gets ``prior_ties`` pseudo-comparisons ending in a tie, so
a model that wins every comparison gets a large but finite score. The first model is the anchor at 0.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

from caitool.stats_math import wilson_interval

ELO_SCALE = 400.0 / math.log(10.0)  # Elo points per natural-log unit of Bradley-Terry strength


@dataclass(frozen=True)
class Outcome:
    model_a: str
    model_b: str
    p_a_better: float
    group: str = ""  # comparisons from one prompt share a group (resampled together in the bootstrap)


def fit_elo(
    models: Sequence[str], outcomes: Sequence[Outcome], prior_ties: float = 1.0, tolerance: float = 1e-10
) -> dict[str, float]:
    """Elo per model, the first model anchored at 0."""
    if not models:
        return {}
    index = {name: i for i, name in enumerate(models)}
    count = len(models)
    wins = [0.0] * count
    games = [[0.0] * count for _ in range(count)]
    for outcome in outcomes:
        a, b = index[outcome.model_a], index[outcome.model_b]
        wins[a] += outcome.p_a_better
        wins[b] += 1.0 - outcome.p_a_better
        games[a][b] += 1.0
        games[b][a] += 1.0
    for a, b in combinations(range(count), 2):
        wins[a] += prior_ties / 2
        wins[b] += prior_ties / 2
        games[a][b] += prior_ties
        games[b][a] += prior_ties
    strength = [1.0] * count
    for _ in range(100_000):
        updated = []
        for i in range(count):
            denominator = sum(games[i][j] / (strength[i] + strength[j]) for j in range(count) if games[i][j])
            updated.append(wins[i] / denominator if denominator else strength[i])
        # Strengths are defined up to a common factor; fix their geometric mean at 1 to keep numbers tame.
        log_mean = sum(math.log(max(s, 1e-300)) for s in updated) / count
        updated = [max(s, 1e-300) / math.exp(log_mean) for s in updated]
        change = max(abs(math.log(new / old)) for new, old in zip(updated, strength, strict=True))
        strength = updated
        if change < tolerance:
            break
    anchor = math.log(strength[0])
    return {name: ELO_SCALE * (math.log(strength[i]) - anchor) for name, i in index.items()}


def bootstrap_elo(
    models: Sequence[str],
    outcomes: Sequence[Outcome],
    resamples: int = 200,
    seed: int = 0,
    prior_ties: float = 1.0,
) -> dict[str, tuple[float, float]]:
    """A 95% percentile interval per model, resampling prompts (groups of outcomes) with replacement."""
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        groups[outcome.group].append(outcome)
    keys = sorted(groups)
    if not keys or resamples < 1:
        return {name: (0.0, 0.0) for name in models}
    rng = random.Random(seed)
    samples: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(resamples):
        drawn = [outcome for _ in keys for outcome in groups[rng.choice(keys)]]
        for name, elo in fit_elo(models, drawn, prior_ties).items():
            samples[name].append(elo)
    return {
        name: (_percentile(values, 0.025), _percentile(values, 0.975)) for name, values in samples.items()
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class PairStats:
    model_a: str
    model_b: str
    comparisons: int
    win_rate_a: float  # mean of p_a_better
    ci95: tuple[float, float]
    wins_a: int  # comparisons with p_a_better > 0.5
    wins_b: int
    ties: int

    def as_dict(self) -> dict[str, object]:
        return {
            "model_a": self.model_a,
            "model_b": self.model_b,
            "comparisons": self.comparisons,
            "win_rate_a": self.win_rate_a,
            "ci95": list(self.ci95),
            "wins_a": self.wins_a,
            "wins_b": self.wins_b,
            "ties": self.ties,
        }


def pair_stats(models: Sequence[str], outcomes: Sequence[Outcome]) -> list[PairStats]:
    """Win rate of the earlier model over the later one, for every pair, in the order models were given."""
    position = {name: i for i, name in enumerate(models)}
    by_pair: dict[tuple[str, str], list[float]] = defaultdict(list)
    for outcome in outcomes:
        a, b, p = outcome.model_a, outcome.model_b, outcome.p_a_better
        if position[a] > position[b]:
            a, b, p = b, a, 1.0 - p
        by_pair[(a, b)].append(p)
    stats = []
    for a, b in combinations(models, 2):
        probabilities = by_pair.get((a, b), [])
        n = len(probabilities)
        total = sum(probabilities)
        stats.append(
            PairStats(
                model_a=a,
                model_b=b,
                comparisons=n,
                win_rate_a=total / n if n else 0.5,
                ci95=wilson_interval(total, n),
                wins_a=sum(p > 0.5 for p in probabilities),
                wins_b=sum(p < 0.5 for p in probabilities),
                ties=sum(p == 0.5 for p in probabilities),
            )
        )
    return stats
