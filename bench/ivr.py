"""The IVR engine's step time over the demo flow (issue 20's goal: well under 1 ms a step).

The workload is the demo flow's scripted conversations (``ivr_flows/flows/demo.tests.yaml``: menus by key
and by voice, collects with Luhn checks and read-backs, lookups, hours, long waits and callbacks, voicemail),
recorded once with the pretend adapter and then replayed ``--repeat`` times. Two figures per step:

- ``step``: ``engine.step(flow, state, input, context)`` alone;
- ``step + state JSON``: what the phone adapter pays per webhook: the stored state parsed from JSON, the step,
  and the new state dumped to JSON again.

``bench/voice.py`` (the whole phone path through signed webhooks) calls ``engine_step_times`` for its engine
figure.

    .venv/bin/python -m bench.ivr [--repeat 200]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from dataclasses import dataclass

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench._common import percentile  # noqa: E402
from ivr_flows.conversations import load_suite  # noqa: E402
from ivr_flows.engine import Context, new_call, step  # noqa: E402
from ivr_flows.inputs import Input  # noqa: E402
from ivr_flows.schema import Flow  # noqa: E402
from ivr_flows.simulator import Call, World  # noqa: E402
from ivr_flows.state import CallState  # noqa: E402

DEMO = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "ivr_flows", "flows", "demo.yaml")


@dataclass(frozen=True, slots=True)
class StepFigures:
    steps: int
    step_p50_us: float
    step_p99_us: float
    step_max_us: float
    json_p50_us: float
    json_p99_us: float

    def lines(self) -> list[str]:
        return [
            f"engine step over the demo flow ({self.steps} steps): "
            f"p50 {self.step_p50_us:.1f} µs, p99 {self.step_p99_us:.1f} µs, max {self.step_max_us:.1f} µs",
            f"step + state JSON load and dump (per webhook): p50 {self.json_p50_us:.1f} µs, "
            f"p99 {self.json_p99_us:.1f} µs",
            "goal: under 1,000 µs a step",
        ]


def recorded_calls(path: str = DEMO) -> tuple[Flow, list[tuple[Context, list[Input]]]]:
    """The demo conversations as input sequences (the caller's and the pretend adapter's), each with the
    clock and hours it ran with."""
    suite = load_suite(path)
    if suite.errors or suite.flow is None or suite.spec is None:
        raise SystemExit("\n".join(suite.errors) or "the demo flow's conversations do not load")
    calls = []
    for conv in suite.spec.tests:
        world = World()
        for spec in (suite.spec.world, conv.world):
            if spec is not None:
                spec.apply(world)
        call = Call(suite.flow, world)
        call.start()
        for s in conv.steps:
            event = s.input()
            if event is not None and not call.ended:
                call.feed(event)
        inputs = [e.item for e in call.transcript if e.who != "engine"]
        calls.append((Context(now=world.now, hours=dict(world.hours)), inputs))
    return suite.flow, calls


def engine_step_times(repeat: int = 200) -> StepFigures:
    """Time every engine step of the demo conversations, ``repeat`` times over."""
    flow, calls = recorded_calls()
    plain: list[float] = []
    with_json: list[float] = []
    clock = time.perf_counter_ns
    gc.collect()
    for _ in range(repeat):
        for context, inputs in calls:
            state = new_call(flow)
            stored = state.model_dump_json()
            for event in inputs:
                t0 = clock()
                state, _ = step(flow, state, event, context)
                t1 = clock()
                t2 = clock()
                loaded = CallState.model_validate_json(stored)
                after, _ = step(flow, loaded, event, context)
                stored = after.model_dump_json()
                t3 = clock()
                plain.append((t1 - t0) / 1000)
                with_json.append((t3 - t2) / 1000)
    return StepFigures(
        steps=len(plain),
        step_p50_us=percentile(plain, 50),
        step_p99_us=percentile(plain, 99),
        step_max_us=max(plain),
        json_p50_us=percentile(with_json, 50),
        json_p99_us=percentile(with_json, 99),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=200, help="replays of the demo conversations")
    args = parser.parse_args()
    for line in engine_step_times(args.repeat).lines():
        print(line)


if __name__ == "__main__":
    main()
