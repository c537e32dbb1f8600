"""Erlang C and Erlang A against the published reference vector and against a brute-force simulation."""

from __future__ import annotations

import heapq
import math
import random

import pytest

from ticketing.erlang import agents_needed, erlang_a, erlang_c

RATE = 100 / 1800  # 100 calls per 30 minutes
AHT, TARGET = 180.0, 20.0


def test_erlang_c_matches_the_reference_vector() -> None:
    s = erlang_c(RATE, AHT, 14, TARGET)
    assert s.traffic == pytest.approx(10.0)
    assert s.p_wait == pytest.approx(0.1741319, abs=5e-7)
    assert s.service_level == pytest.approx(0.88835, abs=5e-6)
    assert s.asa == pytest.approx(7.836, abs=5e-4)
    assert s.occupancy == pytest.approx(0.714, abs=5e-4)
    # too few agents: everybody waits
    assert erlang_c(RATE, AHT, 10, TARGET).service_level == 0.0
    # the fewest agents for 80 % in 20 s: 13 give 79.6 %, 14 give 88.8 %
    assert agents_needed(RATE, AHT, TARGET, 0.80) == 14
    assert erlang_c(RATE, AHT, 13, TARGET).service_level == pytest.approx(0.7956, abs=1e-4)


def test_erlang_a_with_endless_patience_is_erlang_c_and_abandonment_needs_fewer_agents() -> None:
    a = erlang_a(RATE, AHT, 1e9, 14, TARGET)
    assert a.p_wait == pytest.approx(0.1741319, abs=1e-6)
    assert a.service_level == pytest.approx(0.88835, abs=1e-5)
    assert a.asa == pytest.approx(7.836, abs=1e-3)
    impatient = erlang_a(RATE, AHT, 120.0, 14, TARGET)
    assert 0 < impatient.p_abandon < 0.1 and impatient.p_wait < a.p_wait
    assert agents_needed(RATE, AHT, TARGET, 0.8, patience=120.0) <= agents_needed(RATE, AHT, TARGET, 0.8)


def simulate(
    rate: float, aht: float, agents: int, target: float, patience: float | None, n: int, seed: int
) -> dict[str, float]:
    """Brute force: Poisson arrivals, exponential service (and patience), FIFO, ``agents`` servers."""
    rng = random.Random(seed)
    t = 0.0
    free_at: list[float] = [0.0] * agents  # when each server frees (a heap)
    heapq.heapify(free_at)
    waited = answered_within = abandoned = total_wait = 0.0
    arrivals = []
    for _ in range(n):
        t += rng.expovariate(rate)
        arrivals.append((t, rng.expovariate(1 / aht), rng.expovariate(1 / patience) if patience else math.inf))
    for arrive, service, give_up in arrivals:
        start = max(arrive, free_at[0])
        wait = start - arrive
        if wait > give_up:  # gave up before an agent was free: the servers are untouched
            abandoned += 1
            waited += 1
            total_wait += give_up
            continue
        heapq.heapreplace(free_at, start + service)
        if wait > 0:
            waited += 1
        if wait <= target:
            answered_within += 1
        total_wait += wait
    return {
        "p_wait": waited / n,
        "service_level": answered_within / n,
        "asa": total_wait / n,
        "p_abandon": abandoned / n,
    }


@pytest.mark.parametrize("patience", [None, 120.0])
def test_the_formulas_agree_with_a_simulation(patience: float | None) -> None:
    sim = simulate(RATE, AHT, 14, TARGET, patience, 200_000, seed=7)
    s = erlang_c(RATE, AHT, 14, TARGET) if patience is None else erlang_a(RATE, AHT, patience, 14, TARGET)
    assert sim["p_wait"] == pytest.approx(s.p_wait, abs=0.01)
    assert sim["service_level"] == pytest.approx(s.service_level, abs=0.01)
    assert sim["asa"] == pytest.approx(s.asa, rel=0.08)
    assert sim["p_abandon"] == pytest.approx(s.p_abandon, abs=0.005)


def test_the_closed_form_answer_within_t_matches_sampled_waits() -> None:
    """P(answered within T | j callers ahead) in closed form against sampling the phases: the front of the
    queue moves at N/AHT + m/patience with m callers ahead, and this caller gives up at 1/patience."""
    from ticketing.erlang import p_answered_within

    service_rate, theta, target = 3 / 180, 1 / 90, 60.0
    closed = p_answered_within(service_rate, theta, target, 12)
    rng = random.Random(3)
    for j in (0, 1, 4, 11):
        n, hits = 100_000, 0
        for _ in range(n):
            reached = sum(rng.expovariate(service_rate + m * theta) for m in range(j + 1))
            if reached <= target and reached < rng.expovariate(theta):
                hits += 1
        assert hits / n == pytest.approx(closed[j], abs=0.006), j


def test_erlang_a_stays_exact_for_a_large_centre_and_patient_callers() -> None:
    """2,000 calls an hour at AHT 180 s (100 Erlangs) on 103-110 agents: with patience near endless, Erlang A
    gives Erlang C's figures (a = N mu / theta is about 6e8 here: the closed form's terms stay finite)."""
    rate = 2000 / 3600
    for agents, target in ((103, 20.0), (110, 60.0)):
        c = erlang_c(rate, 180.0, agents, target)
        a = erlang_a(rate, 180.0, 1e9, agents, target)
        assert a.p_wait == pytest.approx(c.p_wait, abs=1e-5)
        assert a.service_level == pytest.approx(c.service_level, abs=1e-5)
        assert 0.5 < c.service_level < 0.999
