"""The fault matrix: every injected fault ends recovered or as its typed failure.

Each scenario runs a small pipeline through the real OpenAI provider against
FakeOpenAIServer (or through tools that misbehave), on a VirtualClock, and
says what must come of it. `python -m benchmarks.reliability` prints the
counts recorded in RELIABILITY.md; tests/library/test_reliability.py asserts them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Literal

import anyio
import attrs
from returns.result import Result, Success

from stagefx import (
    Finished,
    ModelAuthenticationError,
    ModelRateLimitError,
    ModelUnavailableError,
    Stage,
    StageException,
    StageState,
    StageTimeoutError,
    SystemClock,
    Tool,
    ToolError,
    UsageTotals,
    ctx,
    tool,
)
from stagefx.openai import OpenAI, OpenAIResponsesConfig
from stagefx.testing import FakeOpenAIServer, Fault, VirtualClock, demo_answer

Expected = Literal["recovered"] | type[StageException]


@attrs.frozen
class Scenario:
    name: str
    faults: tuple[Fault, ...]
    stage: Callable[[], Stage]
    expected: Expected
    injected: int = 0
    """Faults that are not server faults (tools), counted by hand."""
    real_time: bool = False
    """Timeouts around real I/O run on the system clock: a VirtualClock cannot
    see a request in flight and would fire before it reached the server."""
    streamed: bool = False
    """Run with `Stage.stream` (the provider streams natively); its outcome is
    the `Finished` event's."""

    @property
    def fault_count(self) -> int:
        return len(self.faults) + self.injected


@attrs.frozen
class Verdict:
    scenario: Scenario
    outcome: str
    """"recovered", "surfaced" (the expected typed failure, with the last good
    state) or "other" (anything else: must never happen)."""
    detail: str


PRIOR = Stage.predefined("Here is a document.", "Noted.")
"""Every scenario starts here, so the last good state is known."""


@tool
async def flaky_lookup(query: str) -> str:
    """Look something up (always fails)."""
    raise ConnectionError(f"lookup of {query!r} failed")


@tool(stop_on_error=True)
async def critical_lookup(query: str) -> str:
    """Look something up; its failure must stop the pipeline."""
    raise ConnectionError(f"lookup of {query!r} failed")


@tool
async def hanging_lookup(query: str) -> str:
    """Look something up (never answers)."""
    await anyio.sleep_forever()
    return query


def completion() -> Stage:
    return Stage.completion("Summarise the document.")


def retried(limit: int, delay: float = 1.0) -> Callable[[], Stage]:
    return lambda: completion().with_retry(
        limit=limit, delay=delay, catching=(ModelUnavailableError, ModelRateLimitError)
    )


def with_tools(*tools: Tool[..., object]) -> Callable[[], Stage]:
    return lambda: Stage.completion("Look it up.", tools=tools)


TIMEOUT = 1.0
"""Seconds of real time a hanging call gets: the only real waiting here."""

BACKUP = Stage.predefined("fallback", "Summary from the backup path.")

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "429 with Retry-After, retried",
        (Fault.status(429, retry_after="3"),),
        retried(2),
        "recovered",
    ),
    Scenario("429 without Retry-After, retried", (Fault.status(429),), retried(2), "recovered"),
    Scenario(
        "429 past the retry limit",
        (Fault.status(429, retry_after="1"),) * 3,
        retried(2),
        ModelRateLimitError,
    ),
    Scenario(
        "5xx burst, retried",
        (Fault.status(500), Fault.status(502), Fault.status(503)),
        retried(3),
        "recovered",
    ),
    Scenario(
        "5xx burst past the retry limit",
        (Fault.status(503),) * 4,
        retried(3),
        ModelUnavailableError,
    ),
    Scenario(
        "5xx, fallback",
        (Fault.status(500),),
        lambda: completion().with_fallback(BACKUP),
        "recovered",
    ),
    Scenario(
        "slow response past with_timeout",
        (Fault.hang(),),
        lambda: completion().with_timeout(TIMEOUT),
        StageTimeoutError,
        real_time=True,
    ),
    Scenario(
        "slow response, timeout retried",
        (Fault.hang(),),
        lambda: completion().with_timeout(TIMEOUT).with_retry(limit=1, catching=StageTimeoutError),
        "recovered",
        real_time=True,
    ),
    Scenario("malformed body", (Fault.malformed(),), completion, ModelUnavailableError),
    Scenario("malformed body, retried", (Fault.malformed(),), retried(1), "recovered"),
    Scenario("truncated body", (Fault.truncated(),), completion, ModelUnavailableError),
    Scenario("truncated body, retried", (Fault.truncated(),), retried(1), "recovered"),
    Scenario("dropped connection", (Fault.drop(),), completion, ModelUnavailableError),
    Scenario("dropped connection, retried", (Fault.drop(),) * 2, retried(2), "recovered"),
    Scenario("401, not retried", (Fault.status(401),), retried(3), ModelAuthenticationError),
    Scenario(
        "stream cut midway (streamed)",
        (Fault.cut(after=2),),
        completion,
        ModelUnavailableError,
        streamed=True,
    ),
    Scenario(
        "stream cut midway, retried (streamed)",
        (Fault.cut(after=2),),
        retried(1),
        "recovered",
        streamed=True,
    ),
    Scenario(
        "error event midstream (streamed)",
        (Fault.error_event(after=2),),
        completion,
        ModelUnavailableError,
        streamed=True,
    ),
    Scenario(
        "stream stalls past with_timeout (streamed)",
        (Fault.stall(after=2),),
        lambda: completion().with_timeout(TIMEOUT),
        StageTimeoutError,
        real_time=True,
        streamed=True,
    ),
    Scenario(
        "tool raises: the model sees the error",
        (),
        with_tools(flaky_lookup),
        "recovered",
        injected=1,
    ),
    Scenario("tool raises, stop_on_error", (), with_tools(critical_lookup), ToolError, injected=1),
    Scenario(
        "tool raises, stop_on_error, fallback",
        (),
        lambda: with_tools(critical_lookup)().with_fallback(BACKUP, catching=ToolError),
        "recovered",
        injected=1,
    ),
    Scenario(
        "tool hangs past with_timeout",
        (),
        lambda: with_tools(hanging_lookup)().with_timeout(TIMEOUT),
        StageTimeoutError,
        injected=1,
        real_time=True,
    ),
)


async def run_scenario(scenario: Scenario, server: FakeOpenAIServer) -> Verdict:
    server.inject(*scenario.faults)
    clock = SystemClock() if scenario.real_time else VirtualClock()
    async with ctx.scope(
        scenario.name,
        OpenAIResponsesConfig(model="gpt-4o"),
        clock,
        disposables=(OpenAI(api_key="sk-reliability", base_url=server.base_url),),
    ):
        last_good = await PRIOR.execute()
        pipeline = Stage.sequence(PRIOR, scenario.stage())
        outcome = await (streamed(pipeline) if scenario.streamed else pipeline.attempt())
    leftover = server.pending_faults
    if leftover:
        server.clear_faults()
        return Verdict(scenario, "other", f"{leftover} faults never reached the server")
    if isinstance(outcome, Success):
        if scenario.expected == "recovered":
            return Verdict(scenario, "recovered", "")
        return Verdict(scenario, "other", "succeeded, but should have failed")
    error = outcome.failure()
    if scenario.expected != "recovered" and type(error) is scenario.expected:
        # The failure's state is the last good one plus the usage spent up to it.
        spent = tuple(value for value in error.state.values if not isinstance(value, UsageTotals))
        if attrs.evolve(error.state, values=spent) == last_good:
            return Verdict(scenario, "surfaced", type(error).__name__)
        return Verdict(scenario, "other", f"{type(error).__name__} lost the last good state")
    return Verdict(scenario, "other", f"{type(error).__name__}: {error}")


async def streamed(pipeline: Stage) -> Result[StageState, StageException]:
    """The outcome of streaming `pipeline`: its `Finished` event's."""
    async with contextlib.aclosing(pipeline.stream()) as events:
        async for event in events:
            if isinstance(event, Finished):
                return event.outcome
    raise AssertionError("a stream ended without Finished")


async def run_all() -> list[Verdict]:
    with FakeOpenAIServer(demo_answer) as server:
        return [await run_scenario(scenario, server) for scenario in SCENARIOS]


def report(verdicts: list[Verdict]) -> str:
    counts = {"recovered": 0, "surfaced": 0, "other": 0}
    lines = ["| scenario | faults | outcome |", "|---|---|---|"]
    for verdict in verdicts:
        counts[verdict.outcome] += verdict.scenario.fault_count
        shown = verdict.outcome if not verdict.detail else f"{verdict.outcome}: {verdict.detail}"
        lines.append(f"| {verdict.scenario.name} | {verdict.scenario.fault_count} | {shown} |")
    total = sum(verdict.scenario.fault_count for verdict in verdicts)
    lines.append("")
    lines.append(
        f"Faults injected: {total}; in recovered runs: {counts['recovered']}; "
        f"surfaced as typed failures: {counts['surfaced']}; anything else: {counts['other']}."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    print(report(anyio.run(run_all)))
