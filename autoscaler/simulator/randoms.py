"""Poisson draws in O(1): one per replica per tick keeps a day of a big fleet fast.

Small means use inversion by multiplication; larger ones Hormann's transformed rejection
with squeeze (PTRS, "The transformed rejection method for generating Poisson random
variables", Insurance: Mathematics and Economics 12, 1993), which needs ~1.2 uniform
pairs per draw whatever the mean.
"""

from __future__ import annotations

import math
import random


def poisson_many(mean: float, count: int, rng: random.Random) -> list[int]:
    """`count` independent draws with the same mean (the set-up is paid once)."""
    if mean <= 0.0:
        return [0] * count
    uniform = rng.random
    out = []
    if mean < 12.0:
        limit = math.exp(-mean)
        for _ in range(count):
            k, product = 0, uniform()
            while product > limit:
                k += 1
                product *= uniform()
            out.append(k)
        return out
    log_mean = math.log(mean)
    b = 0.931 + 2.53 * math.sqrt(mean)
    a = -0.059 + 0.02483 * b
    inv_alpha = 1.1239 + 1.1328 / (b - 3.4)
    v_r = 0.9277 - 3.6224 / (b - 2.0)
    shift = mean + 0.43
    while len(out) < count:
        u = uniform() - 0.5
        v = uniform()
        us = 0.5 - abs(u)
        k = math.floor((2.0 * a / us + b) * u + shift)
        if us >= 0.07 and v <= v_r:
            out.append(k)
            continue
        if k < 0 or (us < 0.013 and v > us):
            continue
        if math.log(v * inv_alpha / (a / (us * us) + b)) <= -mean + k * log_mean - math.lgamma(
            k + 1.0
        ):
            out.append(k)
    return out
