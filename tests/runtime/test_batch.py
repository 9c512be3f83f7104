"""Running a pipeline over many inputs: order, bounds, laziness, failures, cancellation."""

from __future__ import annotations

import contextlib
import gc
import io
import sys
import tracemalloc
from collections.abc import AsyncIterator, Iterator

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Success

from stagefx import (
    BatchProgress,
    Env,
    ModelFailure,
    ModelOutput,
    ModelRequest,
    ModelUnavailableError,
    MultimodalContent,
    Stage,
    StageExecutionError,
    StageState,
    TokenUsage,
    stage,
)
from stagefx.testing import FunctionModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


def said(request: ModelRequest) -> str:
    return request.context[-1].content.as_string()


class Gauge:
    """A model that answers after a virtual delay set by its input, counting
    how many calls are in flight at once."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.in_flight = 0
        self.most = 0

    async def __call__(self, request: ModelRequest) -> ModelOutput | ModelFailure:
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        try:
            text = said(request)
            await self.clock.sleep(float(len(text) % 7))  # finish out of order
            if "fail" in text:
                return ModelFailure("unavailable", "down")
            return ModelOutput(MultimodalContent.of(f"<{text}>"), usage=TokenUsage("m", 2, 1))
        finally:
            self.in_flight -= 1


def model_env() -> tuple[Env, Gauge]:
    clock = VirtualClock()
    gauge = Gauge(clock)
    return Env.of(FunctionModel(gauge), clock), gauge


async def test_batch_gives_every_outcome_in_input_order_with_a_summary() -> None:
    env, gauge = model_env()
    inputs = [f"item {'x' * n}" for n in range(40)] + ["please fail"]
    outcomes = await Stage.result_completion().batch(inputs, concurrency=5, env=env)
    assert len(outcomes) == 41
    for text, outcome in zip(inputs[:-1], outcomes[:-1], strict=True):
        assert outcome.unwrap().result.as_string() == f"<{text}>"
    assert isinstance(outcomes[-1].failure(), ModelUnavailableError)
    assert gauge.most == 5
    summary = outcomes.summary
    assert (summary.done, summary.failed, summary.in_flight, summary.total) == (41, 1, 0, 41)
    assert summary.outcomes == {"success": 40, "ModelUnavailableError": 1}
    assert (summary.usage.input_tokens, summary.usage.output_tokens) == (80, 40)
    assert summary.elapsed > 0  # virtual seconds


async def test_map_yields_each_outcome_with_its_input_index_as_it_finishes() -> None:
    env, _ = model_env()
    inputs = [f"{'x' * (6 - n)}" for n in range(6)]  # later inputs finish sooner
    seen: list[int] = []
    async for index, outcome in Stage.result_completion().map(inputs, concurrency=6, env=env):
        seen.append(index)
        assert outcome.unwrap().result.as_string() == f"<{inputs[index]}>"
    assert sorted(seen) == list(range(6))
    assert seen != list(range(6))  # in the order they finished


async def test_inputs_are_read_lazily_so_memory_follows_concurrency(anyio_backend: str) -> None:
    # 100,000 inputs on asyncio; 10,000 on trio keep the suite quick (same code path).
    count = 100_000 if anyio_backend == "asyncio" else 10_000
    read = finished = 0
    ahead = 0

    async def numbers(count: int) -> AsyncIterator[StageState]:
        nonlocal read, ahead
        for number in range(count):
            read += 1
            ahead = max(ahead, read - finished)
            yield StageState(result=str(number))

    pipeline = Stage.transform_result(lambda content: content)
    async for _, _outcome in pipeline.map(numbers(count), concurrency=32, env=Env.of()):
        finished += 1
    assert finished == count
    assert ahead <= 32 + 32 + 1  # in flight plus those waiting to be taken

    # What the run holds on to does not grow with the inputs: traced allocations
    # after 2,000 and after 8,000 inputs peak alike.
    peaks: list[int] = []
    for size in (2_000, 8_000):
        gc.collect()
        tracemalloc.start()
        try:
            async for _ in pipeline.map(numbers(size), concurrency=32, env=Env.of()):
                pass
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    assert peaks[1] < peaks[0] * 1.5 + 64 * 1024


async def test_one_failure_never_stops_the_others_and_bad_items_fail_alone() -> None:
    @stage
    async def picky(*, state: StageState) -> StageState:
        if state.result.as_string() == "boom":
            raise ValueError("boom")
        return state

    items: list[object] = ["a", "boom", 42, StageState(result="d")]
    outcomes = await picky.batch(items, concurrency=2, env=Env.of())  # type: ignore[arg-type]  # a bad item on purpose
    assert isinstance(outcomes[0], Success)
    assert isinstance(outcomes[1].failure(), StageExecutionError)
    assert "StageState or content" in str(outcomes[2].failure())
    assert outcomes[3].unwrap().result.as_string() == "d"


async def test_failing_inputs_let_the_items_in_flight_finish_then_raise() -> None:
    done: list[str] = []

    async def inputs() -> AsyncIterator[str]:
        yield "one"
        yield "two"
        raise OSError("the dataset went away")

    @stage
    async def note(*, state: StageState) -> StageState:
        done.append(state.result.as_string())
        return state

    with pytest.raises(OSError, match="went away"):
        await note.batch(inputs(), concurrency=4, env=Env.of())
    assert sorted(done) == ["one", "two"]
    done.clear()
    with pytest.raises(OSError, match="went away"):
        async for _ in note.map(inputs(), concurrency=4, env=Env.of()):
            pass
    assert sorted(done) == ["one", "two"]


async def test_cancelling_the_caller_cancels_every_item_in_flight() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    caller = anyio.CancelScope()
    limit = 4

    @stage
    async def forever(*, state: StageState) -> StageState:
        started.append(1)
        if len(started) == limit:
            caller.cancel()  # the caller gives up once every slot is busy
        try:
            await anyio.Event().wait()
        except anyio.get_cancelled_exc_class():
            cancelled.append(1)
            raise
        return state

    with caller:
        await forever.batch(["a"] * 10, concurrency=limit, env=Env.of())
    assert caller.cancelled_caught
    assert len(started) == len(cancelled) == limit
    started.clear()
    cancelled.clear()
    caller = anyio.CancelScope()
    with caller:
        items = forever.map(["a"] * 10, concurrency=limit, env=Env.of())
        async with contextlib.aclosing(items) as finished:
            async for _ in finished:
                pass
    assert len(started) == len(cancelled) == limit


async def test_leaving_map_early_is_quiet_and_does_not_mask_the_loop_body_error() -> None:
    env, _ = model_env()
    items = Stage.result_completion().map(["a", "b", "c", "d"], concurrency=2, env=env)
    async with contextlib.aclosing(items) as finished:
        async for _ in finished:
            break  # leaving early: no exception group, nothing raised

    async def fail_in_the_loop() -> None:
        items = Stage.result_completion().map(["a", "b", "c"], concurrency=2, env=env)
        async with contextlib.aclosing(items) as finished:
            async for _ in finished:
                raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        await fail_in_the_loop()


async def test_progress_reports_each_step_and_stays_silent_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env, _ = model_env()
    seen: list[BatchProgress] = []
    await Stage.result_completion().batch(
        ["a", "b", "c"], concurrency=2, env=env, progress=seen.append
    )
    assert seen[-1].done == 3
    assert max(step.in_flight for step in seen) == 2
    assert seen[-1].remaining == 0
    await Stage.result_completion().batch(["a"], concurrency=1, env=env, progress=True)
    assert capsys.readouterr().err == ""  # not a terminal: no bar


async def test_bad_arguments_are_refused_clearly() -> None:
    with pytest.raises(ValueError, match="concurrency"):
        await Stage.noop.batch(["a"], concurrency=0, env=Env.of())
    with pytest.raises(TypeError, match="progress"):
        await Stage.noop.batch(["a"], env=Env.of(), progress="yes")  # type: ignore[arg-type]  # a wrong type on purpose


async def test_the_server_never_sees_more_requests_in_flight_than_the_concurrency(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import asyncio

    from stagefx import ctx
    from stagefx.openai import OpenAI, OpenAIChatConfig
    from stagefx.testing import FakeOpenAIServer

    seen = {"now": 0, "most": 0}

    async def answer(request: ModelRequest) -> str:
        seen["now"] += 1  # the server's own loop: no lock needed
        seen["most"] = max(seen["most"], seen["now"])
        try:
            await asyncio.sleep(0.002)  # the server's latency, so requests overlap
            return f"<{said(request)}>"
        finally:
            seen["now"] -= 1

    with FakeOpenAIServer(answer) as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch-in-flight")
        async with ctx.scope(
            "batch",
            OpenAIChatConfig(model="gpt-4o"),
            disposables=(OpenAI(base_url=server.base_url),),
        ):
            inputs = [f"item {n}" for n in range(30)]
            outcomes = await Stage.result_completion().batch(inputs, concurrency=4)
        assert len(server.requests) == 30
    assert seen["most"] == 4
    assert [outcome.unwrap().result.as_string() for outcome in outcomes] == [
        f"<{text}>" for text in inputs
    ]


async def test_a_progress_callback_that_raises_loses_no_result(
    caplog: pytest.LogCaptureFixture,
) -> None:
    env, _ = model_env()
    calls: list[int] = []

    def broken(progress: BatchProgress) -> None:
        calls.append(progress.done)
        raise RuntimeError("my progress view broke")

    outcomes = await Stage.result_completion().batch(
        ["a", "b", "c"], concurrency=2, env=env, progress=broken
    )
    assert [outcome.unwrap().result.as_string() for outcome in outcomes] == ["<a>", "<b>", "<c>"]
    assert calls == [0]  # told once, then left alone
    assert "progress callback raised" in caplog.text


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        if self.closed:  # as a closed real file does
            raise ValueError("I/O operation on closed file")
        return True


async def test_the_progress_bar_draws_on_stderr_never_on_stdout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env, _ = model_env()
    out, err = io.StringIO(), FakeTerminal()
    monkeypatch.setattr(sys, "stdout", out)
    monkeypatch.setattr(sys, "stderr", err)
    await Stage.result_completion().batch(["a", "b"], concurrency=1, env=env, progress=True)
    assert out.getvalue() == ""  # `python run.py > results.jsonl` gets only its data
    assert "stagefx" in err.getvalue()


@pytest.mark.parametrize("stderr", ["missing", "closed"])
async def test_a_progress_bar_without_a_usable_stderr_is_silently_left_out(
    monkeypatch: pytest.MonkeyPatch, stderr: str
) -> None:
    env, _ = model_env()
    closed = FakeTerminal()
    closed.close()
    monkeypatch.setattr(sys, "stderr", None if stderr == "missing" else closed)
    outcomes = await Stage.result_completion().batch(["a"], concurrency=1, env=env, progress=True)
    assert outcomes[0].unwrap().result.as_string() == "<a>"


async def test_one_str_is_refused_as_the_inputs() -> None:
    env, _ = model_env()
    with pytest.raises(TypeError, match=r"pass \[text\]"):
        await Stage.result_completion().batch("a long document", env=env)

    async def map_over_text() -> None:
        async with contextlib.aclosing(Stage.noop.map("text", env=env)) as items:
            async for _ in items:
                pass

    with pytest.raises(TypeError, match=r"pass \[text\]"):
        await map_over_text()


async def test_a_cancelled_batch_closes_the_users_generator_of_inputs_at_once() -> None:
    closed: list[str] = []

    async def inputs() -> AsyncIterator[str]:
        try:
            for index in range(1_000):
                yield f"item {index}"
        finally:
            closed.append("async")

    def plain() -> Iterator[str]:
        try:
            yield from (f"item {index}" for index in range(1_000))
        finally:
            closed.append("sync")

    async def cancelled_midway(given: AsyncIterator[str] | Iterator[str]) -> None:
        caller = anyio.CancelScope()

        async def cancel_the_caller(content: MultimodalContent) -> MultimodalContent:
            caller.cancel()  # the batch is cancelled while items are in flight
            await anyio.sleep_forever()
            return content

        with caller:
            await Stage.transform_result(cancel_the_caller).batch(given, concurrency=2)
        assert closed  # closed by the batch, while the caller still holds it: not by the GC
        closed.clear()

    await cancelled_midway(inputs())
    await cancelled_midway(plain())


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no message either")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=40, deadline=None)
@given(
    raise_at=st.integers(0, 12),
    error=st.sampled_from([RuntimeError("boom"), ValueError(""), Unprintable(), KeyError("k")]),
    items=st.integers(1, 6),
    concurrency=st.integers(1, 3),
)
def test_a_hostile_progress_sink_never_costs_a_result(
    backend: str, raise_at: int, error: Exception, items: int, concurrency: int
) -> None:
    async def check() -> None:
        env, _ = model_env()
        told: list[int] = []

        def sink(progress: BatchProgress) -> None:
            told.append(progress.done)
            if len(told) > raise_at:
                raise error

        inputs = [f"item {index}" for index in range(items)]
        outcomes = await Stage.result_completion().batch(
            inputs, concurrency=concurrency, env=env, progress=sink
        )
        assert [outcome.unwrap().result.as_string() for outcome in outcomes] == [
            f"<{text}>" for text in inputs
        ]
        assert outcomes.summary.done == items

    anyio.run(check, backend=backend)
