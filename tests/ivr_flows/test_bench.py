"""bench/ivr.py keeps working: it replays the demo conversations and reports step times (figures are not
judged here; the machine is shared)."""

from __future__ import annotations

from bench.ivr import engine_step_times, recorded_calls


def test_the_engine_benchmark_replays_every_demo_conversation() -> None:
    flow, calls = recorded_calls()
    assert flow.name == "demo" and len(calls) >= 10
    assert sum(len(inputs) for _, inputs in calls) > 50
    figures = engine_step_times(repeat=1)
    assert figures.steps == sum(len(inputs) for _, inputs in calls)
    assert 0 < figures.step_p50_us <= figures.step_p99_us <= figures.step_max_us
    assert figures.json_p50_us > 0 and "goal: under 1,000 µs a step" in figures.lines()
