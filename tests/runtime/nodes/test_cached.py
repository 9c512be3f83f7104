"""`cached` answers only the input it was given: keys exact about types,
linear to compute, per-event-loop single flight, expiry on the Env's clock,
swept expiry, a bounded number of entries, cache stores and their errors."""

from __future__ import annotations

import dataclasses
import enum
import os
import subprocess
import sys
import threading
import time
from collections.abc import Hashable

import anyio
import attrs
import pydantic
import pytest
import yaml
from returns.result import Failure, Success

from stagefx import (
    ArtifactContent,
    CacheStore,
    Env,
    MemoryCacheStore,
    ModelInput,
    ModelOutput,
    MultimodalContent,
    RecordingTracer,
    Stage,
    StageExecutionError,
    StageState,
    TokenUsage,
    stage,
)
from stagefx._env.cache_store import SWEEP_EVERY
from stagefx._runtime.nodes.cached import MAX_KEY_DEPTH, state_key
from stagefx.testing import FunctionModel, VirtualClock

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


class Region(enum.IntEnum):
    EU = 1


class Priority(enum.IntEnum):
    HIGH = 1


@dataclasses.dataclass
class Point:  # eq=True, not frozen: unhashable
    x: int
    y: int = 0


@attrs.define
class Box:  # attrs' default: eq=True, unhashable
    items: list[int]


class Person(pydantic.BaseModel):
    name: str
    tags: list[str] = []


class Touchy:
    """Compares and hashes only by raising."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("eq exploded")

    def __hash__(self) -> int:
        raise RuntimeError("hash exploded")


class Opaque:
    """Equal only to itself, like any plain object."""

    def __init__(self, n: int) -> None:
        self.n = n


class Counter:
    """A cached stage that says which input it saw, counting its runs."""

    def __init__(self) -> None:
        self.runs = 0

        @stage
        async def describe(*, state: StageState) -> StageState:
            self.runs += 1
            return state.updated(result=f"run {self.runs}: {_shown(state.values)}")

        self.stage = describe
        self.memo = describe.cached(limit=100_000)  # every distinct input kept

    async def answer(self, state: StageState, env: Env | None = None) -> str:
        done = await self.memo.execute(state, env=env or Env.of())
        return done.result.as_string()


def _shown(values: tuple[object, ...]) -> str:
    return ", ".join(f"{type(value).__name__}" for value in values)


def of(*values: object) -> StageState:
    return StageState(values=values)


# --- exact about types -------------------------------------------------------------------


async def test_true_and_one_are_different_keys() -> None:
    counter = Counter()
    assert await counter.answer(of(True)) == "run 1: bool"
    assert await counter.answer(of(1)) == "run 2: int"
    assert await counter.answer(of(True)) == "run 1: bool"  # each kept under its own key
    assert state_key(StageState(result="a", values=((True,),))) != state_key(
        StageState(result="a", values=((1,),))
    )


async def test_int_enums_of_equal_value_are_different_keys() -> None:
    assert int(Region.EU) == int(Priority.HIGH)  # equal, as the old keys saw them
    counter = Counter()
    assert await counter.answer(of(Region.EU)) == "run 1: Region"
    assert await counter.answer(of(Priority.HIGH)) == "run 2: Priority"
    assert state_key(of([Region.EU])) != state_key(of([Priority.HIGH]))
    assert state_key(of([Region.EU])) != state_key(of([1]))


async def test_one_and_one_point_zero_are_different_keys() -> None:
    counter = Counter()
    assert await counter.answer(of(1)) == "run 1: int"
    assert await counter.answer(of(1.0)) == "run 2: float"
    assert state_key(of({"n": 1})) != state_key(of({"n": 1.0}))
    assert state_key(of({"n": 0.0})) != state_key(of({"n": False}))


async def test_classes_of_one_name_from_different_definitions_are_different_keys() -> None:
    def make() -> type:
        @dataclasses.dataclass(frozen=True)
        class Local:
            x: int

        return Local

    first, second = make(), make()
    assert first.__qualname__ == second.__qualname__
    assert state_key(of(first(1))) != state_key(of(second(1)))
    assert state_key(of(first(1))) == state_key(of(first(1)))


def test_equal_values_built_apart_share_a_key_whatever_their_insertion_order() -> None:
    one = of({"a": [1, 2], "b": {3, 4}}, Person(name="Ada", tags=["x"]))
    two = of({"b": {4, 3}, "a": [1, 2]}, Person(name="Ada", tags=["x"]))
    assert state_key(one) == state_key(two)
    assert state_key(one) != state_key(of({"a": [1, 2], "b": {3}}, Person(name="Ada")))
    usage_left_out = ModelOutput(MultimodalContent.of("x"))
    with_usage = ModelOutput(usage_left_out.content, usage=TokenUsage("m", 1, 2))
    # `usage` takes no part in ModelOutput equality, nor in its key
    assert state_key(StageState(context=(usage_left_out,))) == state_key(
        StageState(context=(with_usage,))
    )


def test_keys_are_the_same_in_another_process() -> None:
    """A shared store (`cached(key=...)`) must find one process's entries from another:
    no `hash()` (salted per process) goes into a key."""
    code = (
        "from stagefx import ModelInput, StageState\n"
        "from stagefx._runtime.nodes.cached import state_key\n"
        "state = StageState(context=(ModelInput.of('hi'),), result='doc',"
        " values=({'a': [1, 2.5, None], 'b': frozenset({'x', 'y', 'z'})},))\n"
        "print(state_key(state).hex())"
    )
    here = StageState(
        context=(ModelInput.of("hi"),),
        result="doc",
        values=({"a": [1, 2.5, None], "b": frozenset({"x", "y", "z"})},),
    )
    key = state_key(here)
    assert key is not None
    for seed in ("1", "2"):
        there = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=60,
        )
        assert there.stdout.strip() == key.hex()


# --- unhashable values ---------------------------------------------------------------------


async def test_unhashable_values_get_real_keys() -> None:
    counter = Counter()
    inputs = [
        of(Point(1)),
        of(Point(2)),
        of([1, 2]),
        of([2, 1]),
        of({"k": [1]}),
        of(Person(name="Ada")),
        of(Person(name="Bob")),
        of(Box([1])),
        of(Box([2])),
    ]
    keys = {state_key(state) for state in inputs}
    assert None not in keys
    assert len(keys) == len(inputs)  # no shared bucket
    first = [await counter.answer(state) for state in inputs]
    again = [await counter.answer(state) for state in inputs]
    assert counter.runs == len(inputs)
    assert again == first
    assert await counter.answer(of(Point(1))) == first[0]  # an equal value built anew hits


async def test_8000_distinct_unhashable_inputs_are_cached_in_well_under_a_second() -> None:
    counter = Counter()
    started = time.perf_counter()
    for n in range(8_000):
        await counter.answer(of(Point(n), [n, "x"]))
    for n in range(8_000):
        await counter.answer(of(Point(n), [n, "x"]))
    elapsed = time.perf_counter() - started
    assert counter.runs == 8_000
    assert elapsed < 3.0  # a bound with slack (it takes a fraction of a second), not a benchmark


async def test_a_yaml_alias_bomb_artifact_is_keyed_by_its_text_in_no_time() -> None:
    lol = '["lol","lol","lol","lol","lol","lol","lol","lol","lol"]'
    bomb = f"a: &a {lol}\n" + "".join(
        f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
        for previous, name in zip("abcdefg", "bcdefgh", strict=True)
    )
    assert len(bomb) < 400  # 9**8 leaves once expanded

    def bombed() -> StageState:
        value = yaml.safe_load(bomb)  # shared subtrees: cheap to build, endless to compare
        return StageState(result=MultimodalContent.of(ArtifactContent(value, bomb)))

    counter = Counter()
    one, other = bombed(), bombed()  # equal values, no subtree shared between them
    started = time.perf_counter()
    first = await counter.answer(one)
    second = await counter.answer(other)
    assert time.perf_counter() - started < 0.5  # comparing the values took 1.6 s
    assert (counter.runs, first) == (1, second)
    other_type = StageState(result=MultimodalContent.of(ArtifactContent([1], bomb)))
    assert state_key(other_type) != state_key(one)  # same text, another type


# --- what cannot be keyed runs uncached ----------------------------------------------------


async def test_values_that_cannot_be_encoded_run_uncached_and_say_so() -> None:
    deep: list[object] = []
    for _ in range(MAX_KEY_DEPTH + 10):
        deep = [deep]
    cyclic: list[object] = []
    cyclic.append(cyclic)

    class Unreducible:
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = None  # type: ignore[assignment]  # unhashable on purpose

        def __reduce_ex__(self, protocol: object) -> str | tuple[object, ...]:
            raise TypeError("no")

    for value in (deep, cyclic, object(), Unreducible()):
        assert state_key(of(value)) is None
        tracer = RecordingTracer()
        counter = Counter()
        env = Env.of(tracer)
        for _ in range(2):
            outcome = await counter.memo.attempt(of(value), env=env)
            assert isinstance(outcome, Success)
        assert counter.runs == 2
        cached_spans = [span for span in tracer.spans if span.name == "cached"]
        assert [span.attributes.get("cache") for span in cached_spans] == ["uncacheable"] * 2


async def test_a_value_whose_eq_and_hash_raise_does_not_escape_attempt() -> None:
    counter = Counter()
    for _ in range(2):
        outcome = await counter.memo.attempt(of(Touchy(1)), env=Env.of())
        assert isinstance(outcome, Success)
    assert counter.runs == 1  # keyed by its state: no `==` asked
    assert isinstance(await counter.memo.attempt(of(Touchy(2)), env=Env.of()), Success)
    assert counter.runs == 2


async def test_values_equal_only_to_themselves_hit_only_for_the_same_object() -> None:
    counter = Counter()
    kept = Opaque(1)
    await counter.answer(of(kept))
    await counter.answer(of(kept))
    assert counter.runs == 1
    await counter.answer(of(Opaque(1)))  # equal attributes, another object: another input
    assert counter.runs == 2


# --- single flight per event loop ------------------------------------------------------------


both_inside = threading.Barrier(2)


@stage
async def meets_the_other_thread(*, state: StageState) -> StageState:
    # Each thread's run must be inside at once: neither waits on the other's flight.
    await anyio.to_thread.run_sync(both_inside.wait, 5.0)
    return state.updated(result="met")


SHARED = meets_the_other_thread.cached()  # module level: one node, two threads


@pytest.mark.parametrize(
    "backends", [("asyncio", "asyncio"), ("trio", "trio"), ("asyncio", "trio")]
)
def test_a_module_level_cached_stage_serves_two_threads_with_their_own_loops(
    backends: tuple[str, str],
) -> None:
    both_inside.reset()
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(index: int, backend: str) -> None:
        async def main() -> None:
            with anyio.fail_after(10):
                done = await SHARED.execute(StageState(result="same"), env=Env.of())
            results[index] = done.result.as_string()

        try:
            anyio.run(main, backend=backend)
        except BaseException as error:
            errors.append(error)

    threads = [
        threading.Thread(target=run, args=(index, backend), daemon=True)
        for index, backend in enumerate(backends)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert errors == []
    assert results == {0: "met", 1: "met"}


async def test_concurrent_runs_on_one_loop_still_share_one_flight() -> None:
    runs = 0
    release = anyio.Event()

    @stage
    async def slow(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        await release.wait()
        return state.updated(result="done")

    memo = slow.cached()
    tracer = RecordingTracer()

    async def call() -> None:
        await memo.execute(of(Point(1)), env=Env.of(tracer))  # an unhashable input

    async with anyio.create_task_group() as group:
        for _ in range(20):
            group.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert runs == 1
    annotated = sorted(
        str(span.attributes["cache"]) for span in tracer.spans if span.name == "cached"
    )
    assert annotated == ["miss"] + ["shared"] * 19


# --- swept expiry --------------------------------------------------------------------------


async def test_expired_entries_are_swept_without_a_limit() -> None:
    store = MemoryCacheStore()  # limit None: only expiry bounds it
    state = StageState()
    now = 0.0
    for n in range(20_000):
        key = ("stage", n.to_bytes(32, "big"))
        assert await store.load(key, now) is None
        await store.store(key, state, now + 1.0)
        now += 2.0  # every earlier entry has expired
    assert len(store) <= SWEEP_EVERY + 1  # not 20,000 dead entries

    clock = VirtualClock()
    counter = Counter()
    memo = counter.stage.cached(expiration=1)
    env = Env.of(store, clock)
    for n in range(500):
        await memo.execute(StageState(result=str(n)), env=env)
        clock.advance(2)
    assert counter.runs == 500
    assert len(store) <= SWEEP_EVERY + 1


async def test_a_sweep_keeps_every_live_entry() -> None:
    store = MemoryCacheStore()
    state = StageState(result="kept")
    for n in range(1_000):
        await store.load(("live", n), 0.0)
        await store.store(("live", n), state, float("inf"))
    for n in range(1_000):
        await store.load(("short", n), float(n))
        await store.store(("short", n), state, n + 0.5)
    assert all([await store.load(("live", n), 2_000.0) is state for n in range(1_000)])
    assert len(store) <= 2 * 1_000 + SWEEP_EVERY  # dead entries: at most about the live ones


# --- store errors ----------------------------------------------------------------------------


class BrokenStore(CacheStore):
    def __init__(self, on: str) -> None:
        self.on = on
        self.keys: list[Hashable] = []

    async def load(self, key: Hashable, now: float) -> StageState | None:
        self.keys.append(key)
        if self.on == "load":
            raise OSError("disk gone")
        return None

    async def store(self, key: Hashable, value: StageState, expires_at: float) -> None:
        if self.on == "store":
            raise OSError("disk full")


async def test_a_store_that_raises_on_load_becomes_a_failure() -> None:
    counter = Counter()
    outcome = await counter.memo.attempt(of(1), env=Env.of(BrokenStore("load")))
    assert isinstance(outcome, Failure)
    error = outcome.failure()
    assert isinstance(error, StageExecutionError)
    assert isinstance(error.__cause__, OSError)
    assert counter.runs == 0


async def test_a_store_that_raises_on_store_keeps_the_good_result() -> None:
    counter = Counter()
    tracer = RecordingTracer()
    store = BrokenStore("store")
    outcome = await counter.memo.attempt(of(1), env=Env.of(store, tracer))
    assert isinstance(outcome, Success)
    assert outcome.unwrap().result.as_string() == "run 1: int"
    (span,) = [span for span in tracer.spans if span.name == "cached"]
    assert span.attributes["cache_store_error"] == "OSError"
    (key,) = store.keys  # keys: (stage, 32-byte digest of the input)
    assert isinstance(key, tuple)
    name, digest = key
    assert name is counter.memo.node
    assert isinstance(digest, bytes)
    assert len(digest) == 32


async def test_a_shared_store_is_keyed_by_name_and_digest_not_by_state() -> None:
    store = BrokenStore("neither")
    await Stage.noop.cached(key="named").attempt(of(Point(1)), env=Env.of(store))
    await Stage.noop.cached(key="named").attempt(of(Point(1)), env=Env.of(store))
    first, second = store.keys
    assert first == second == ("named", state_key(of(Point(1))))


async def test_cached_expires_on_the_env_clock_and_keeps_at_most_limit_entries() -> None:
    clock = VirtualClock()
    runs: list[str] = []

    @stage
    async def counted(*, state: StageState) -> StageState:
        runs.append(state.result.as_string())
        return state

    memo = counted.cached(limit=2, expiration=60)
    env = Env.of(clock)
    for text in ["a", "a", "b", "c", "a"]:
        await memo.execute(StageState(result=text), env=env)
    assert runs == ["a", "b", "c", "a"]  # "a" was evicted by "c"
    clock.advance(61)
    await memo.execute(StageState(result="a"), env=env)
    assert runs == ["a", "b", "c", "a", "a"]


async def test_cached_handles_states_with_unhashable_artifacts() -> None:
    runs = 0

    @stage
    async def counted(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        return state

    memo = counted.cached()
    state = StageState(
        result=MultimodalContent.of(ArtifactContent({"k": [1, 2]})), values=({"a": 1},)
    )
    await memo.execute(state, env=ENV)
    await memo.execute(StageState(result=state.result, values=({"a": 1},)), env=ENV)
    assert runs == 1


async def test_failures_are_not_cached() -> None:
    runs = 0

    @stage
    async def fails_once(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise TimeoutError("first")
        return state

    memo = fails_once.cached()
    assert isinstance(await memo.attempt(env=ENV), Failure)
    assert isinstance(await memo.attempt(env=ENV), Success)


async def test_a_cache_store_in_the_env_is_shared_by_stages_with_the_same_key() -> None:
    from stagefx import MemoryCacheStore

    runs: list[str] = []

    @stage
    async def summarise(*, state: StageState) -> StageState:
        runs.append(state.result.as_string())
        return state.updated(result="summary")

    store = MemoryCacheStore()
    env = Env.of(store)
    first = summarise.cached(key="summary")
    second = summarise.cached(key="summary")  # another stage value, e.g. another process
    unnamed = summarise.cached()
    for memo in (first, second, unnamed, unnamed):
        assert (
            await memo.execute(StageState(result="doc"), env=env)
        ).result.as_string() == "summary"
    assert runs == ["doc", "doc"]  # once for the named entries, once for the unnamed stage
    assert len(store) == 2


async def test_a_custom_cache_store_sees_expiry_on_the_env_clock() -> None:

    kept: dict[Hashable, tuple[StageState, float]] = {}

    class DictStore(CacheStore):
        async def load(self, key: Hashable, now: float) -> StageState | None:
            hit = kept.get(key)
            return hit[0] if hit is not None and hit[1] > now else None

        async def store(self, key: Hashable, value: StageState, expires_at: float) -> None:
            kept[key] = (value, expires_at)

    clock = VirtualClock(start=100.0)
    memo = Stage.transform_result(lambda content: MultimodalContent.of("x")).cached(
        expiration=60, key="x"
    )
    await memo.execute(env=Env.of(DictStore(), clock))
    ((key, (value, expires_at)),) = kept.items()
    assert isinstance(key, tuple)
    assert key[0] == "x"
    assert (value.result.as_string(), expires_at) == ("x", 160.0)


async def test_a_cached_stage_under_retry_keeps_hitting_its_cache() -> None:
    calls: list[int] = []

    def answer(request: object) -> ModelOutput:
        calls.append(1)
        return ModelOutput(
            MultimodalContent.of(f"draft {len(calls)}"), usage=TokenUsage("m", 10, 5)
        )

    checked: list[int] = []

    @stage
    async def validate(*, state: StageState) -> StageState:
        checked.append(1)
        if len(checked) == 1:
            raise ValueError("first draft rejected")
        return state

    summarise = (
        Stage.sequence(Stage.completion("Summarise."), validate).cached().with_retry(limit=2)
    )
    env = Env.of(FunctionModel(answer), VirtualClock())
    results = [
        (await summarise.execute(StageState(result="doc"), env=env)).result.as_string()
        for _ in range(3)
    ]
    assert len(calls) == 2  # the rejected draft and the kept one; later runs hit the cache
    assert results == ["draft 2"] * 3


async def test_cached_runs_once_under_1000_concurrent_identical_calls() -> None:
    runs = 0
    release = anyio.Event()

    @stage
    async def expensive(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        await release.wait()
        return state.updated(result="computed")

    memo = expensive.cached()
    env = Env.of()
    results: list[str] = []

    async def call() -> None:
        results.append((await memo.execute(StageState(result="same"), env=env)).result.as_string())

    async with anyio.create_task_group() as group:
        for _ in range(1_000):
            group.start_soon(call)
        await anyio.wait_all_tasks_blocked()
        release.set()
    assert runs == 1
    assert results == ["computed"] * 1_000
