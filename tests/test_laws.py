"""The combinator laws, checked by hypothesis over generated stage trees and states."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from functools import partial

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Success

from stagefx import Env, MultimodalContent, Stage, StageException, StageState, stage
from stagefx._conversation import ModelContext, ModelInput
from stagefx.testing import laws, strategies

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


@given(strategies.stages(), strategies.stages(), strategies.states())
def test_when_true_runs_the_stage_and_when_false_the_alternative(
    item: Stage, alternative: Stage, state: StageState
) -> None:
    async def check() -> None:
        alone = await item.attempt(state, env=ENV)
        laws.assert_equivalent("when(True)", await item.when(True).attempt(state, env=ENV), alone)
        laws.assert_equivalent(
            "when(True) by callable",
            await item.when(lambda *, state: True).attempt(state, env=ENV),
            alone,
        )
        laws.assert_equivalent(
            "when(False)", await item.when(False).attempt(state, env=ENV), Success(state)
        )
        laws.assert_equivalent(
            "when(False, alternative)",
            await item.when(False, alternative=alternative).attempt(state, env=ENV),
            await alternative.attempt(state, env=ENV),
        )

    run(check)


@given(strategies.stages(), strategies.states())
def test_a_loop_with_a_false_condition_runs_once_post_check_and_never_pre_check(
    item: Stage, state: StageState
) -> None:
    async def check() -> None:
        def never(*, state: StageState, iteration: int) -> bool:
            return False

        post = Stage.loop(item, condition=never, mode="post_check")
        pre = Stage.loop(item, condition=never, mode="pre_check")
        laws.assert_equivalent(
            "post_check loop",
            await post.attempt(state, env=ENV),
            await item.attempt(state, env=ENV),
        )
        laws.assert_equivalent("pre_check loop", await pre.attempt(state, env=ENV), Success(state))

    run(check)


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


def _only_branch(branches: Sequence[StageState | StageException]) -> StageState:
    (branch,) = branches
    if isinstance(branch, StageException):
        raise branch
    return branch


@given(strategies.stages(), strategies.states())
def test_concurrent_with_one_branch_is_that_branch(item: Stage, state: StageState) -> None:
    async def check() -> None:
        laws.assert_equivalent(
            "one-branch concurrent",
            await Stage.concurrent(item, merge=_only_branch).attempt(state, env=ENV),
            await item.attempt(state, env=ENV),
        )

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

    memo = counted.cached()

    async def check() -> None:
        for text in inputs:
            outcome = await memo.attempt(StageState(result=text), env=ENV)
            assert outcome == Success(StageState(result=f"seen {text}"))

    run(check)
    assert sorted(runs) == sorted(set(inputs))


@given(strategies.stages(), strategies.stages(), strategies.states())
def test_fallback_runs_only_when_the_stage_fails(
    item: Stage, fallback: Stage, state: StageState
) -> None:
    async def check() -> None:
        alone = await item.attempt(state, env=ENV)
        expected = alone if isinstance(alone, Success) else await fallback.attempt(state, env=ENV)
        laws.assert_equivalent(
            "fallback", await item.with_fallback(fallback).attempt(state, env=ENV), expected
        )

    run(check)


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
