"""Arithmetic of parallel model sets, shared by the enumeration and the ILP so they agree exactly.

A set answers well when any member does. Assuming members fail independently, its quality is
1 - prod(1 - q_m), i.e. log(1 - quality) = sum log(1 - q_m): linear in membership, which is
what lets the ILP express a quality floor as one linear row. Cost adds up; latency is the
slowest member (calls run in parallel).
"""
from __future__ import annotations

import math
from functools import lru_cache
from itertools import combinations

import numpy as np

# log(1 - q) for q = 1 is -inf; the solvers need finite coefficients. exp(-700) ~ 1e-304, so
# clipping there changes no quality that a float can represent as below 1.
LOG_FLOOR = -700.0
# Slack on the floor and the cost cap, so that a set sitting exactly on a limit (up to float
# rounding of the sum) counts as meeting it on every path.
REL_TOL = 1e-12


def log_miss(quality: np.ndarray) -> np.ndarray:
    """log(1 - q), clipped at LOG_FLOOR."""
    with np.errstate(divide="ignore"):
        return np.maximum(np.log1p(-np.asarray(quality, dtype=np.float64)), LOG_FLOOR)


def set_quality(log_miss_sum):
    """Quality of a set from the sum of its members' log(1 - q)."""
    return -np.expm1(log_miss_sum)


def floor_limit(min_quality: float | None) -> float:
    """Largest admissible sum of log(1 - q) for a set to reach `min_quality` (inf: no floor)."""
    if min_quality is None:
        return math.inf
    limit = float(log_miss(np.array(min_quality)))
    return limit + REL_TOL * max(1.0, abs(limit))


def meets_floor(quality, min_quality: float | None):
    """Whether each single model's quality reaches `min_quality` (True without a floor), as the selector
    tests a floor: in log(1 - q), with its tolerance."""
    return log_miss(quality) <= floor_limit(min_quality)


def cost_limit(max_cost: float | None) -> float:
    if max_cost is None:
        return math.inf
    return max_cost + REL_TOL * max(1.0, abs(max_cost))


@lru_cache(maxsize=64)
def subsets(n: int, size: int) -> np.ndarray:
    """All `size`-subsets of range(n) as a [size, C(n, size)] index array (member j of every
    subset in row j, so sums are `size` contiguous gathers). Cached: reused across requests."""
    count = math.comb(n, size) if size <= n else 0
    flat = np.fromiter((i for combo in combinations(range(n), size) for i in combo), dtype=np.intp,
                       count=count * size)
    out = np.ascontiguousarray(flat.reshape(count, size).T)
    out.setflags(write=False)
    return out


def member_sum(values: np.ndarray, combos: np.ndarray) -> np.ndarray:
    """Sum of `values` over the members of each subset in `combos` ([size, C])."""
    total = values[combos[0]].copy()
    for row in combos[1:]:
        total += values[row]
    return total
