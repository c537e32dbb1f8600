"""Erlang C and Erlang A, written out (no pyworkforce, which imports pandas and ortools). Pure functions;
rates per second, times in seconds.

Erlang C (M/M/N): callers wait as long as it takes. Traffic A = arrival rate x AHT (Erlangs); with N > A
agents, P(wait) = Erlang C formula (from Erlang B by its recurrence, which stays exact for large N);
service level = 1 - P(wait) e^{-(N - A) T / AHT}; ASA = P(wait) AHT / (N - A); occupancy = A / N.

Erlang A (M/M/N+M, Palm's model): callers also give up after an exponential patience (mean ``patience``).
The stationary distribution of callers in the system is summed until its tail is negligible; an arrival
sees it (PASTA). P(wait) = P(k >= N); P(abandon) = sum over k > N of the abandonment rate (k - N)/patience,
over the arrival rate. Service level = P(answered within T): an arrival with j callers ahead is answered
within T if it moves through j + 1 phases (each ends when the front of the queue moves: an agent frees up,
rate N/AHT, or one of the m callers ahead gives up, m/patience) before T and before its own patience ends.
In closed form (``p_answered_within``): the phases' rates are equally spaced, so their total time is
-log(U)/theta with U ~ Beta(N mu / theta, j + 1) (Renyi's representation), and the answer is an incomplete
beta function of integer second argument, a finite sum of positive terms: every j in one pass. (It replaced a
uniformization whose cost, steps x positions per call, was half the staffing forecast's time.)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Staffing:
    agents: int
    traffic: float  # Erlangs
    p_wait: float
    service_level: float
    asa: float  # seconds: the mean wait in queue (Erlang A: over every arrival, answered or not)
    occupancy: float
    p_abandon: float = 0.0


def erlang_c(arrival_rate: float, aht: float, agents: int, target_seconds: float) -> Staffing:
    """Erlang C for ``agents`` agents; with too few (N <= A) everybody waits forever."""
    a = arrival_rate * aht
    if agents <= a:
        return Staffing(agents, a, 1.0, 0.0, math.inf, 1.0)
    b = 1.0
    for k in range(1, agents + 1):
        b = a * b / (k + a * b)  # Erlang B, recursively
    p_wait = agents * b / (agents - a * (1 - b))
    sl = 1 - p_wait * math.exp(-(agents - a) * target_seconds / aht)
    return Staffing(agents, a, p_wait, sl, p_wait * aht / (agents - a), a / agents)


def erlang_a(arrival_rate: float, aht: float, patience: float, agents: int, target_seconds: float) -> Staffing:
    """Erlang A for ``agents`` agents and callers of mean ``patience`` seconds."""
    lam, mu, theta, n = arrival_rate, 1 / aht, 1 / patience, agents
    a = lam / mu
    weights = [1.0]  # unnormalized P(k callers in the system), k = 0, 1, ...
    for k in range(1, n + 1):
        weights.append(weights[-1] * a / k)
    k = n
    total = sum(weights)
    while weights[-1] > 1e-12 * total or k < n + 10:
        k += 1
        weights.append(weights[-1] * lam / (n * mu + (k - n) * theta))
        total += weights[-1]
        if k > n + 100_000:
            break
    p = [w / total for w in weights]
    queue = p[n:]  # an arrival finds j = 0, 1, ... callers waiting (k = n + j)
    p_wait = sum(queue)
    p_abandon = sum(pj * j * theta for j, pj in enumerate(queue)) / lam
    answered_within = (1 - p_wait) + sum(
        pj * w for pj, w in zip(queue, p_answered_within(n * mu, theta, target_seconds, len(queue)), strict=True)
    )
    mean_wait = sum(pj * j for j, pj in enumerate(queue)) / lam  # Little: time in queue, over all arrivals
    occupancy = (lam * (1 - p_abandon)) * aht / n
    return Staffing(n, a, p_wait, answered_within, mean_wait, min(1.0, occupancy), p_abandon)


def p_answered_within(service_rate: float, theta: float, target: float, positions: int) -> list[float]:
    """P(answered within ``target`` | j callers ahead), j = 0 .. positions - 1, when the front of the queue
    moves at ``service_rate`` + m ``theta`` (m callers ahead) and this caller gives up at rate ``theta``.

    With a = service_rate / theta, c = e^{-theta T} and S the time to reach an agent: P = E[e^{-theta S};
    S <= T] = a / (a + j + 1) (1 - I_c(a + 1, j + 1)), and for an integer second argument
    I_c(a + 1, j + 1) = sum over k <= j of c^{a+1} Gamma(a + 1 + k) / (Gamma(a + 1) k!) (1 - c)^k: each term a
    probability (a negative binomial's), computed from its logarithm so that neither c^{a+1} underflows nor
    the rest overflows when a is large (patient callers, many agents)."""
    if target <= 0:
        return [0.0] * positions  # only who finds an agent free is answered within no time
    a = service_rate / theta
    log_one_minus_c = math.log(-math.expm1(-theta * target))
    log_term = -(a + 1) * theta * target  # k = 0: c^{a+1}
    cdf = 0.0
    out = []
    for j in range(positions):
        if j:
            log_term += math.log((a + j) / j) + log_one_minus_c
        cdf += math.exp(log_term)
        out.append(a / (a + j + 1) * max(0.0, 1.0 - cdf))
    return out


@functools.lru_cache(maxsize=4096)
def agents_needed(
    arrival_rate: float,
    aht: float,
    target_seconds: float,
    target_level: float,
    *,
    patience: float | None = None,
    max_agents: int = 10_000,
) -> int:
    """The fewest agents whose service level meets ``target_level`` (0-1), by Erlang C, or by Erlang A when
    ``patience`` is given. Remembered: a forecast asks the same question for many hours of the week."""
    if arrival_rate <= 0:
        return 0
    n = max(1, math.floor(arrival_rate * aht) + (0 if patience else 1))
    while n < max_agents:
        s = (
            erlang_a(arrival_rate, aht, patience, n, target_seconds)
            if patience
            else erlang_c(arrival_rate, aht, n, target_seconds)
        )
        if s.service_level >= target_level:
            return n
        n += 1
    return max_agents
