"""Deep pipelines run as flat loops: no RecursionError however deep the nesting."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import anyio
import pytest

from stagefx import (
    Env,
    MultimodalContent,
    RecordingTracer,
    Stage,
    StageExecutionError,
    StageMeta,
    StageState,
    stage,
)
from stagefx.testing import VirtualClock
from tests.helpers import keep_first

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


async def test_a_10000_deep_nested_sequence_runs() -> None:
    tick = Stage.transform_result(lambda content: MultimodalContent.of(content, "."))
    pipeline = tick
    for _ in range(9_999):
        pipeline = Stage.sequence(pipeline, tick)
    right_nested = tick
    for _ in range(9_999):
        right_nested = Stage.sequence(tick, right_nested)
    for nested in (pipeline, right_nested):
        state = await nested.execute(env=Env.of())
        assert len(state.result.as_string()) == 10_000


async def test_a_million_iteration_loop_runs() -> None:
    checked: list[int] = []

    def below_a_million(*, state: StageState, iteration: int) -> bool:
        checked.append(iteration)
        return iteration < 1_000_000

    await Stage.loop(Stage.noop, condition=below_a_million).execute(env=Env.of())
    assert len(checked) == 1_000_000
    assert checked[-1] == 1_000_000


# Every combinator nests as deep as a user likes: the interpreter keeps its own
# stack, so building, describing, drawing and running never recurse per level.

DEEP = 10_000
SHALLOWER = 1_000  # task groups and cancel scopes: one per level, each real
DOT = Stage.transform_result(lambda content: MultimodalContent.of(content, "."))


def only_route(*, state: StageState, options: Mapping[str, StageMeta]) -> str:
    return "inner"


def once(*, state: StageState, iteration: int) -> bool:
    return False


LAYERS: dict[str, tuple[int, Callable[[Stage], Stage]]] = {
    "with_retry": (DEEP, lambda inner: inner.with_retry(limit=1)),
    "when": (DEEP, lambda inner: inner.when(lambda *, state: True)),
    "with_meta": (DEEP, lambda inner: inner.with_meta(name="layer")),
    "traced": (DEEP, lambda inner: inner.traced(label="layer")),
    "cached": (DEEP, lambda inner: inner.cached(limit=1)),
    "ignore_result": (DEEP, lambda inner: inner.ignore_result()),
    "extend_result": (DEEP, lambda inner: inner.extend_result()),
    "with_volatile_context": (DEEP, lambda inner: inner.with_volatile_context()),
    "with_volatile_tools_context": (DEEP, lambda inner: inner.with_volatile_tools_context()),
    "with_fallback": (DEEP, lambda inner: inner.with_fallback(Stage.noop)),
    "with_ctx": (DEEP, lambda inner: inner.with_ctx(StageMeta(name="value"))),
    "cached_externally": (
        DEEP,
        lambda inner: inner.cached_externally(
            make_key=lambda *, state: 0, read=lambda key: None, write=lambda key, state: None
        ),
    ),
    "named sequence": (
        DEEP,
        lambda inner: Stage.sequence(inner, Stage.noop).with_meta(name="step"),
    ),
    "router": (
        DEEP,
        lambda inner: Stage.router(
            inner.with_meta(name="inner", description="the only way"), routing=only_route
        ),
    ),
    "loop": (DEEP, lambda inner: Stage.loop(inner, condition=once)),
    "concurrent": (SHALLOWER, lambda inner: Stage.concurrent(inner, merge=keep_first)),
    "with_timeout": (SHALLOWER, lambda inner: inner.with_timeout(3600)),
}


@contextmanager
def shipped_recursion_limit() -> Iterator[None]:
    """Python's default limit (1,000), whatever the test runner set."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000)
    try:
        yield
    finally:
        sys.setrecursionlimit(previous)


@pytest.mark.parametrize("layer", sorted(LAYERS))
async def test_every_combinator_nests_deep_to_build_describe_draw_and_run(layer: str) -> None:
    depth, wrap = LAYERS[layer]
    with shipped_recursion_limit():
        pipeline = DOT
        for _ in range(depth):
            pipeline = wrap(pipeline)
        shape = pipeline.describe()
        shown = 1 if layer == "with_meta" else depth  # a name labels its stage's own node
        assert sum(1 for _ in shape.walk()) >= shown
        assert pipeline.to_mermaid().count("\n") >= shown
        envs = [Env.of(), Env.of(RecordingTracer())]
        if layer != "with_timeout":
            # VirtualClock jumps once its first sleeper has waited a few checkpoints:
            # a thousand watchdogs started one after another would fire the first.
            envs.append(Env.of(VirtualClock()))
        for env in envs:
            state = await pipeline.execute(StageState(), env=env)
            if layer != "ignore_result":
                assert state.result.as_string() == "."


async def test_a_deep_failure_unwinds_every_layer_and_keeps_the_named_path() -> None:
    @stage
    async def broken(*, state: StageState) -> StageState:
        raise ConnectionError("down")

    pipeline = broken
    for _ in range(DEEP):
        pipeline = pipeline.with_retry(limit=0).with_meta(name="layer")
    with shipped_recursion_limit():
        failed = (await pipeline.attempt(StageState(result="in"))).failure()
    assert isinstance(failed, StageExecutionError)
    assert failed.stage_path == ("layer",) * DEEP
    assert failed.state.result.as_string() == "in"


async def test_a_timeout_deep_inside_cancels_only_its_own_layer() -> None:
    @stage
    async def stuck(*, state: StageState) -> StageState:
        await anyio.Event().wait()  # never set: only the deadline ends it
        return state.updated(result="late")

    # A deadline a nanosecond away on the system clock: the cancel-scope path,
    # with nothing to wait for in real time.
    recovered = Stage.predefined("q", "recovered", result="recovered")
    pipeline = stuck.with_timeout(1e-9).with_fallback(recovered)
    for _ in range(SHALLOWER):
        pipeline = pipeline.with_timeout(3600).with_retry(limit=0)
    with shipped_recursion_limit():
        state = await pipeline.execute(env=Env.of())
    assert state.result.as_string() == "recovered"
