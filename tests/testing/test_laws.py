"""The combinator laws, checked by hypothesis over generated stage trees and states."""

from __future__ import annotations

import ast
import itertools
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Success

from stagefx import (
    Env,
    ModelFailure,
    ModelOutput,
    ModelRequest,
    MultimodalContent,
    Stage,
    StageState,
    TokenUsage,
    UsageTotals,
    stage,
)
from stagefx._core.conversation import ModelContext, ModelInput
from stagefx._runtime.node import Node
from stagefx.testing import Answer, FunctionModel, VirtualClock, laws, strategies

ENV = Env.of()
settings.register_profile("stagefx", max_examples=60, deadline=None)
settings.load_profile("stagefx")


def run(check: Callable[[], Awaitable[None]]) -> None:
    anyio.run(check)


@given(strategies.stages(), strategies.states())
def test_noop_is_the_identity_of_sequence(item: Stage, state: StageState) -> None:
    run(lambda: laws.check_identity(item, state, ENV))


@given(strategies.stages(), strategies.stages(), strategies.stages(), strategies.states())
def test_sequence_is_associative(a: Stage, b: Stage, c: Stage, state: StageState) -> None:
    run(lambda: laws.check_associativity(a, b, c, state, ENV))


@given(strategies.failing_stages(), strategies.stages(), strategies.states())
def test_a_failure_short_circuits_the_sequence(
    failing: Stage, after: Stage, state: StageState
) -> None:
    run(lambda: laws.check_short_circuit(failing, after, state, ENV))


def _appending(word: str) -> Callable[[MultimodalContent], MultimodalContent]:
    return lambda content: MultimodalContent.of(content, word)


def _adding_turn(word: str) -> Callable[[ModelContext], ModelContext]:
    return lambda context: (*context, ModelInput.of(word))


@given(strategies.words, strategies.words, strategies.states())
def test_transform_result_is_a_functor(first: str, second: str, state: StageState) -> None:
    run(lambda: laws.check_result_functor(_appending(first), _appending(second), state, ENV))


@given(strategies.words, strategies.words, strategies.states())
def test_transform_context_is_a_functor(first: str, second: str, state: StageState) -> None:
    run(lambda: laws.check_context_functor(_adding_turn(first), _adding_turn(second), state, ENV))


@given(strategies.stages(), strategies.states())
def test_result_and_context_modifiers_keep_what_they_promise(
    item: Stage, state: StageState
) -> None:
    async def check() -> None:
        alone = await item.attempt(state, env=ENV)
        ignored = await item.ignore_result().attempt(state, env=ENV)
        extended = await item.extend_result().attempt(state, env=ENV)
        volatile = await item.with_volatile_context().attempt(state, env=ENV)
        match alone:
            case Success(after):
                assert ignored == Success(after.updated(result=state.result))
                assert extended == Success(
                    after.updated(result=state.result.extending(after.result))
                )
                assert volatile == Success(state.updated(result=after.result))
            case Failure(_):
                for modified in (ignored, extended, volatile):
                    laws.assert_equivalent("modifier keeps the failure", modified, alone)

    run(check)


@given(st.integers(0, 5), st.integers(0, 5), strategies.states())
def test_retry_runs_k_plus_one_times_for_k_failures(
    failures: int, limit: int, state: StageState
) -> None:
    runs = 0

    @stage
    async def flaky(*, state: StageState) -> StageState:
        nonlocal runs
        runs += 1
        if runs <= failures:
            raise ConnectionError(f"attempt {runs}")
        return state.updated(result="done")

    async def check() -> None:
        outcome = await flaky.with_retry(limit=limit).attempt(state, env=ENV)
        if failures <= limit:
            assert outcome == Success(state.updated(result="done"))
            assert runs == failures + 1
        else:
            assert isinstance(outcome, Failure)
            assert runs == limit + 1
            assert isinstance(outcome.failure().__cause__, ConnectionError)

    run(check)


@given(strategies.stages(), st.lists(strategies.states(), min_size=1, max_size=5))
def test_cached_is_equivalent_to_the_stage(item: Stage, states: list[StageState]) -> None:
    run(lambda: laws.check_cached_determinism(item, states, ENV))


@given(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=12))
def test_cached_runs_once_per_distinct_input(inputs: list[str]) -> None:
    runs: list[str] = []

    @stage
    async def counted(*, state: StageState) -> StageState:
        runs.append(state.result.as_string())
        return state.updated(result=f"seen {state.result.as_string()}")

    memo = counted.cached(limit=1_000)  # every distinct input kept (None holds one)

    async def check() -> None:
        for text in inputs:
            outcome = await memo.attempt(StageState(result=text), env=ENV)
            assert outcome == Success(StageState(result=f"seen {text}"))

    run(check)
    assert sorted(runs) == sorted(set(inputs))


def test_the_law_checkers_report_broken_laws() -> None:
    calls = 0

    def impure(content: MultimodalContent) -> MultimodalContent:
        nonlocal calls
        calls += 1
        return MultimodalContent.of(content, str(calls))

    @stage
    async def ticking(*, state: StageState) -> StageState:
        return state.updated(result=str(next(ticks)))

    ticks = iter(range(1000))
    violations = [
        partial(laws.check_result_functor, impure, impure, StageState.empty, ENV),
        partial(laws.check_cached_determinism, ticking, [StageState.empty], ENV),
        partial(laws.check_short_circuit, Stage.noop, Stage.noop, StageState.empty, ENV),
    ]
    for violation in violations:
        try:
            anyio.run(violation)
        except laws.LawViolation:
            continue
        raise AssertionError("a broken law went unreported")


# when, loop, retry, fallback and concurrent, over generated trees -------------

spending_stages = strategies.stages(spending=True, max_leaves=5)
"""Trees whose leaves may spend tokens, so the usage the combinators keep counts."""

some_failing = st.one_of(
    spending_stages,
    st.tuples(spending_stages, strategies.failing_stages()).map(lambda pair: Stage.sequence(*pair)),
)
"""Trees, half of which fail, often after spending: what retry and fallback handle."""

spent_states = st.one_of(
    strategies.states(),
    strategies.states().map(
        lambda state: state.updated(UsageTotals((TokenUsage("before", 2, 3),)))
    ),
)
"""States, some of which already hold usage from earlier stages."""


@settings(max_examples=100)
@given(spending_stages, st.none() | spending_stages, spent_states)
def test_when_runs_the_stage_or_the_alternative_as_its_condition_answers(
    item: Stage, alternative: Stage | None, state: StageState
) -> None:
    run(lambda: laws.check_when(item, state, ENV, alternative=alternative))


@settings(max_examples=60)
@given(strategies.stages(spending=True, max_leaves=4), spent_states)
def test_a_loop_is_a_repeated_sequence(item: Stage, state: StageState) -> None:
    run(lambda: laws.check_loop(item, state, ENV, iterations=2))


@settings(max_examples=100)
@given(some_failing, st.integers(0, 2), spent_states)
def test_retry_reruns_only_the_failures_it_catches(
    item: Stage, limit: int, state: StageState
) -> None:
    run(lambda: laws.check_retry(item, state, ENV, limit=limit))


@settings(max_examples=100)
@given(some_failing, spending_stages, spent_states)
def test_fallback_runs_the_other_stage_exactly_on_a_failure(
    item: Stage, other: Stage, state: StageState
) -> None:
    run(lambda: laws.check_fallback(item, other, state, ENV))


branch_lists = st.one_of(
    st.lists(strategies.stages(max_leaves=4), min_size=1, max_size=3),
    st.lists(strategies.stages(spending=True, max_leaves=4), min_size=1, max_size=3),
)
"""Branches that may fail, spend, or both."""


@settings(max_examples=100)
@given(branch_lists, spent_states)
def test_concurrent_is_a_traversal(branches: list[Stage], state: StageState) -> None:
    run(lambda: laws.check_concurrent(branches, state, ENV))


# The same laws on model stages: usage from real completions, waits on a clock --


def _answer(request: ModelRequest) -> Answer:
    said = request.context[-1].content.as_string()
    if said == "slow":
        return ModelFailure("rate_limited", "slow down", retry_after=3)
    return ModelOutput(MultimodalContent.of(f"echo {said}"), usage=TokenUsage("fake", 5, 2))


def test_the_laws_hold_for_model_stages_that_spend_and_wait() -> None:
    clock = VirtualClock()
    env = Env.of(FunctionModel(_answer), clock)
    answering = Stage.completion("hello")
    limited = Stage.sequence(Stage.completion("hi"), Stage.completion("slow"))
    state = StageState(result="start")

    async def check() -> None:
        await laws.check_when(limited, state, env, alternative=answering)
        await laws.check_loop(answering, state, env, iterations=2)
        await laws.check_loop(limited, state, env, iterations=2)
        await laws.check_retry(answering, state, env)
        await laws.check_retry(limited, state, env)
        await laws.check_fallback(limited, answering, state, env)
        await laws.check_fallback(answering, limited, state, env)
        await laws.check_concurrent([answering, answering.with_meta(name="twice")], state, env)
        await laws.check_concurrent([limited], state, env)

    run(check)
    assert clock.sleeps  # the rate limit's retry_after waited, on the virtual clock
    assert clock.now() == 3 * len(clock.sleeps)


def test_a_failure_the_merge_raises_keeps_every_branch_usage() -> None:
    spending = Stage.completion("hello")
    failing = Stage.completion("slow")
    env = Env.of(FunctionModel(_answer), VirtualClock())
    run(lambda: laws.check_concurrent([spending, failing], StageState.empty, env))


# Each checker reports a stage that breaks its law ------------------------------


def _ticking() -> Stage:
    """A different result on every run."""
    ticks = itertools.count()

    @stage
    async def ticking(*, state: StageState) -> StageState:
        return state.updated(result=str(next(ticks)))

    return ticking


def _flaky() -> Stage:
    """Fails on its first run only."""
    runs = itertools.count()

    @stage
    async def flaky(*, state: StageState) -> StageState:
        if next(runs) == 0:
            raise ConnectionError("first run")
        return state

    return flaky


def _peeking() -> list[Stage]:
    """Two branches sharing a list: the second reports how often the first ran."""
    written: list[str] = []

    @stage
    async def writer(*, state: StageState) -> StageState:
        written.append("ran")
        return state

    @stage
    async def reader(*, state: StageState) -> StageState:
        return state.updated(result=str(len(written)))

    return [writer, reader]


LAWLESS: dict[str, tuple[Callable[[], Awaitable[None]], str]] = {
    "when": (lambda: laws.check_when(_ticking(), StageState.empty, ENV), r"when\(True\)"),
    "loop": (lambda: laws.check_loop(_ticking(), StageState.empty, ENV), "loop"),
    "retry": (lambda: laws.check_retry(_flaky(), StageState.empty, ENV), r"retry\(limit=0\)"),
    "fallback": (
        lambda: laws.check_fallback(
            _flaky(), Stage.transform_result(_appending("other")), StageState.empty, ENV
        ),
        "fallback of a failure",
    ),
    "fallback other": (
        lambda: laws.check_fallback(Stage.noop, _ticking(), StageState.empty, ENV),
        r"failing.with_fallback\(other\)",
    ),
    "concurrent": (
        lambda: laws.check_concurrent(_peeking(), StageState.empty, ENV),
        "branch 1 as if alone",
    ),
}


@pytest.mark.parametrize("name", LAWLESS)
def test_each_new_checker_reports_a_lawless_stage(name: str) -> None:
    check, law = LAWLESS[name]
    with pytest.raises(laws.LawViolation, match=law):
        run(check)


def test_the_checkers_refuse_what_they_cannot_check() -> None:
    with pytest.raises(ValueError, match="iterations"):
        run(lambda: laws.check_loop(Stage.noop, StageState.empty, ENV, iterations=-1))
    with pytest.raises(ValueError, match="limit"):
        run(lambda: laws.check_retry(Stage.noop, StageState.empty, ENV, limit=-1))
    with pytest.raises(ValueError, match="at least one"):
        run(lambda: laws.check_concurrent([], StageState.empty, ENV))


def _node_classes(base: type[Node]) -> list[type[Node]]:
    found: list[type[Node]] = []
    for subclass in base.__subclasses__():
        found += [subclass, *_node_classes(subclass)]
    return found


def _used_here() -> set[str]:
    """The names this module reads from `laws` (`laws.check_loop`, ...)."""
    tree = ast.parse(Path(__file__).read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "laws"
    }


def test_every_node_declares_its_laws_as_law_objects_all_collected_and_exercised() -> None:
    declared = {kind.kind: kind.laws for kind in _node_classes(Node) if "laws" in vars(kind)}
    assert all(isinstance(law, laws.Law) for held in declared.values() for law in held)
    assert laws.all_laws() == declared
    named = {law.check.__name__ for held in declared.values() for law in held}
    assert {"check_when", "check_loop", "check_retry", "check_fallback"} <= named
    assert named <= set(laws.__all__)
    for held in declared.values():
        for law in held:
            assert getattr(laws, law.check.__name__) is law.check, law.name
    assert named <= _used_here(), f"laws no test here checks: {named - _used_here()}"
