"""Law checkers: call them from your tests to verify your own stages.

Each checker runs stages on a state in an `Env` and raises `LawViolation`
(an `AssertionError`) describing the difference when a law does not hold.
They are async; under hypothesis, wrap a call in `anyio.run`.

Two outcomes are *equivalent* when both succeed with equal states, or both
fail with the same failure type, message, stage path and last good state.
Where a law holds only *up to usage*, the token usage (`UsageTotals`) in the
states is left out of the comparison and checked on its own.

The laws speak of deterministic stages: run twice on equal states, a stage
must give equivalent outcomes (a model must answer equal requests alike, as
`FunctionModel` does; `ScriptedModel` does not). Checkers run each stage
several times. Stages that wait (a rate limit's `retry_after`, `with_timeout`)
wait on the Env's clock: give the Env a `VirtualClock` to keep checks instant.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import anyio.lowlevel
from returns.result import Failure, Result, Success

from stagefx._core.content import MultimodalContent
from stagefx._core.conversation import ModelContext
from stagefx._core.errors import StageException
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals
from stagefx._env.env import Env
from stagefx._runtime.nodes.control import StateCondition
from stagefx._runtime.nodes.flow import LoopCondition
from stagefx._runtime.stage import Stage

__all__ = [
    "LawViolation",
    "assert_equivalent",
    "check_associativity",
    "check_cached_determinism",
    "check_concurrent",
    "check_context_functor",
    "check_fallback",
    "check_identity",
    "check_loop",
    "check_result_functor",
    "check_retry",
    "check_short_circuit",
    "check_when",
    "equivalent",
]

Outcome = Result[StageState, StageException]


class LawViolation(AssertionError):
    """A combinator law did not hold; the message says which and how."""


def _key(outcome: Outcome) -> object:
    match outcome:
        case Success(state):
            return ("success", state)
        case Failure(error):
            return ("failure", type(error), error.message, error.stage_path, error.state)
        case _:  # Result's subclasses are not a closed union to a type checker
            raise TypeError(f"not a Result: {outcome!r}")


def equivalent(left: Outcome, right: Outcome) -> bool:
    """Whether two outcomes are the same for a user (see the module docstring)."""
    return _key(left) == _key(right)


def assert_equivalent(law: str, left: Outcome, right: Outcome) -> None:
    """Raise `LawViolation`, naming `law` and both sides, unless they are equivalent."""
    if not equivalent(left, right):
        raise LawViolation(f"{law}:\n  left:  {_key(left)!r}\n  right: {_key(right)!r}")


async def check_identity(stage: Stage, state: StageState, env: Env) -> None:
    """`sequence(noop, s) == s == sequence(s, noop)`."""
    alone = await stage.attempt(state, env=env)
    assert_equivalent(
        "left identity", await Stage.sequence(Stage.noop, stage).attempt(state, env=env), alone
    )
    assert_equivalent(
        "right identity", await Stage.sequence(stage, Stage.noop).attempt(state, env=env), alone
    )


async def check_associativity(
    first: Stage, second: Stage, third: Stage, state: StageState, env: Env
) -> None:
    """`sequence(sequence(a, b), c) == sequence(a, sequence(b, c)) == sequence(a, b, c)`."""
    flat = await Stage.sequence(first, second, third).attempt(state, env=env)
    left = await Stage.sequence(Stage.sequence(first, second), third).attempt(state, env=env)
    right = await Stage.sequence(first, Stage.sequence(second, third)).attempt(state, env=env)
    assert_equivalent("associativity (left nesting)", left, flat)
    assert_equivalent("associativity (right nesting)", right, flat)


async def check_short_circuit(failing: Stage, after: Stage, state: StageState, env: Env) -> None:
    """If `failing` fails, `sequence(failing, after)` fails the same way and
    never runs `after`."""
    alone = await failing.attempt(state, env=env)
    if not isinstance(alone, Failure):
        raise LawViolation(f"short circuit: the first stage did not fail: {alone!r}")
    ran: list[StageState] = []

    async def spy(content: MultimodalContent) -> MultimodalContent:
        ran.append(state)
        return content

    chained = await Stage.sequence(failing, Stage.transform_result(spy), after).attempt(
        state, env=env
    )
    assert_equivalent("short circuit", chained, alone)
    if ran:
        raise LawViolation("short circuit: a stage after the failure ran")


async def check_result_functor(
    first: Callable[[MultimodalContent], MultimodalContent],
    second: Callable[[MultimodalContent], MultimodalContent],
    state: StageState,
    env: Env,
) -> None:
    """`transform_result(id) == noop`; `transform_result(g . f) ==
    sequence(transform_result(f), transform_result(g))`."""
    assert_equivalent(
        "result functor identity",
        await Stage.transform_result(lambda content: content).attempt(state, env=env),
        await Stage.noop.attempt(state, env=env),
    )
    assert_equivalent(
        "result functor composition",
        await Stage.transform_result(lambda content: second(first(content))).attempt(
            state, env=env
        ),
        await Stage.sequence(Stage.transform_result(first), Stage.transform_result(second)).attempt(
            state, env=env
        ),
    )


async def check_context_functor(
    first: Callable[[ModelContext], ModelContext],
    second: Callable[[ModelContext], ModelContext],
    state: StageState,
    env: Env,
) -> None:
    """The functor laws for `transform_context`, as for `check_result_functor`."""
    assert_equivalent(
        "context functor identity",
        await Stage.transform_context(lambda context: context).attempt(state, env=env),
        await Stage.noop.attempt(state, env=env),
    )
    assert_equivalent(
        "context functor composition",
        await Stage.transform_context(lambda context: second(first(context))).attempt(
            state, env=env
        ),
        await Stage.sequence(
            Stage.transform_context(first), Stage.transform_context(second)
        ).attempt(state, env=env),
    )


async def check_cached_determinism(stage: Stage, states: list[StageState], env: Env) -> None:
    """`stage.cached()` gives what `stage` gives, for every state, run twice over."""
    memo = stage.cached()
    for state in [*states, *states]:
        assert_equivalent(
            "cached equivalence",
            await memo.attempt(state, env=env),
            await stage.attempt(state, env=env),
        )


# Helpers of the checkers below ------------------------------------------------

_NO_USAGE = UsageTotals()


class _Refused(Exception):
    """What the checkers' own failing stage raises."""


class _Unmatched(Exception):
    """Raised by no stage: a `catching` that matches nothing."""


def _never_matching(error: Exception) -> bool:
    return False


def _refusing() -> Stage:
    """A stage that always fails, wrapping a `_Refused`, and spends nothing."""

    def refuse(content: MultimodalContent) -> MultimodalContent:
        raise _Refused("refused on purpose by a law checker")

    return Stage.transform_result(refuse)


def _tagging(word: str) -> Stage:
    return Stage.transform_result(lambda content: MultimodalContent.of(content, f"<{word}>"))


def _repeated(stage: Stage, times: int) -> Stage:
    """`sequence(stage, ..., stage)`, `times` copies; `noop` for none."""
    return Stage.sequence(*[stage] * times) if times else Stage.noop


def _counted(stage: Stage, runs: list[int]) -> Stage:
    """`stage` after a step that appends to `runs` and changes nothing."""

    def count(content: MultimodalContent) -> MultimodalContent:
        runs.append(len(runs))
        return content

    return Stage.sequence(Stage.transform_result(count), stage)


def _usage(outcome: Outcome) -> UsageTotals:
    state = outcome.unwrap() if isinstance(outcome, Success) else outcome.failure().state
    return state.get(UsageTotals, _NO_USAGE)


def _spent(outcome: Outcome, base: StageState) -> UsageTotals:
    """The usage `outcome` added to what `base` held."""
    return _usage(outcome).combined(base.get(UsageTotals, _NO_USAGE), sign=-1)


def _with_usage(state: StageState, usage: UsageTotals) -> StageState:
    return state if usage == state.get(UsageTotals, _NO_USAGE) else state.updated(usage)


def _without_usage(state: StageState) -> StageState:
    kept = tuple(value for value in state.values if type(value) is not UsageTotals)
    return StageState(context=state.context, result=state.result, values=kept)


def _key_up_to_usage(outcome: Outcome) -> object:
    if isinstance(outcome, Success):
        return ("success", _without_usage(outcome.unwrap()))
    error = outcome.failure()
    return ("failure", type(error), error.message, error.stage_path, _without_usage(error.state))


def _assert_equivalent_up_to_usage(law: str, left: Outcome, right: Outcome) -> None:
    if _key_up_to_usage(left) != _key_up_to_usage(right):
        raise LawViolation(
            f"{law} (up to usage):\n  left:  {_key(left)!r}\n  right: {_key(right)!r}"
        )


def _assert_usage(law: str, outcome: Outcome, expected: UsageTotals) -> None:
    if _usage(outcome) != expected:
        raise LawViolation(
            f"{law}:\n  usage:    {_usage(outcome)!r}\n  expected: {expected!r}\n"
            f"  outcome:  {_key(outcome)!r}"
        )


def _assert_runs(law: str, runs: list[int], expected: int) -> None:
    if len(runs) != expected:
        raise LawViolation(f"{law}: the stage ran {len(runs)} times, expected {expected}")


def _as_result(outcome: StageState | StageException) -> Outcome:
    return Failure(outcome) if isinstance(outcome, StageException) else Success(outcome)


# when, loop, retry, fallback, concurrent ---------------------------------------


def _conditions(answer: bool, asked: list[StageState]) -> list[tuple[str, bool | StateCondition]]:
    """`answer` as a bool, a sync callable and an async one (recording what they are asked)."""

    def sync(*, state: StageState) -> bool:
        asked.append(state)
        return answer

    async def suspending(*, state: StageState) -> bool:
        asked.append(state)
        await anyio.lowlevel.checkpoint()
        return answer

    return [(str(answer), answer), (f"sync {answer}", sync), (f"async {answer}", suspending)]


async def check_when(
    stage: Stage, state: StageState, env: Env, *, alternative: Stage | None = None
) -> None:
    """`when` runs `stage` or the alternative, as its condition answers:

    - `stage.when(True) == stage`, also with an `alternative`;
    - `stage.when(False) == noop`;
    - `stage.when(False, alternative=other) == other`;
    - a condition `(*, state) -> bool`, sync or async, behaves as its answer,
      and is asked once, on the input state;
    - `noop.when(False, alternative=stage) == stage`: `stage` as the alternative.

    `other` is `alternative`, by default a stage that tags the result.
    """
    other = _tagging("alternative") if alternative is None else alternative
    alone = await stage.attempt(state, env=env)
    instead = await other.attempt(state, env=env)
    asked: list[StageState] = []
    for answer in (True, False):
        for label, condition in _conditions(answer, asked):
            for given in (None, other):
                law = f"when({label}{'' if given is None else ', alternative'})"
                asked.clear()
                outcome = await stage.when(condition, alternative=given).attempt(state, env=env)
                if callable(condition) and asked != [state]:
                    raise LawViolation(
                        f"{law}: the condition was asked {len(asked)} times, "
                        "expected once, on the input state"
                    )
                expected = alone if answer else Success(state) if given is None else instead
                assert_equivalent(law, outcome, expected)
    assert_equivalent(
        "noop.when(False, alternative=stage)",
        await Stage.noop.when(False, alternative=stage).attempt(state, env=env),
        alone,
    )


def _below(n: int | None) -> tuple[LoopCondition, LoopCondition]:
    """`iteration < n` (always true for None) as a sync and an async loop condition."""

    def sync(*, state: StageState, iteration: int) -> bool:
        return n is None or iteration < n

    async def suspending(*, state: StageState, iteration: int) -> bool:
        await anyio.lowlevel.checkpoint()
        return n is None or iteration < n

    return sync, suspending


async def check_loop(stage: Stage, state: StageState, env: Env, *, iterations: int = 3) -> None:
    """`loop` is a repeated sequence; for every `n` from 0 to `iterations`:

    - `loop(stage, condition=false)` (`post_check`) `== stage`, and with
      `mode="pre_check"` `== noop`;
    - `loop(stage, condition=true, max_iterations=n) == sequence(stage, ..., stage)`
      with `n` copies (`noop` for none), in either mode;
    - `loop(stage, condition=iteration < n)` is `n` copies with `pre_check` and
      `max(n, 1)` with `post_check`, for a sync or an async condition:
      `iteration` counts the finished runs.

    A failing run ends the loop with its failure, as it ends the sequence.
    """
    if iterations < 0:
        raise ValueError(f"check_loop needs iterations >= 0, got {iterations!r}")
    copies = [
        await _repeated(stage, n).attempt(state, env=env) for n in range(max(iterations, 1) + 1)
    ]
    never, always = _below(0)[0], _below(None)[0]
    assert_equivalent(
        "loop(false) post_check",
        await Stage.loop(stage, condition=never, mode="post_check").attempt(state, env=env),
        copies[1],
    )
    assert_equivalent(
        "loop(false) pre_check",
        await Stage.loop(stage, condition=never, mode="pre_check").attempt(state, env=env),
        Success(state),
    )
    modes: tuple[Literal["post_check", "pre_check"], ...] = ("post_check", "pre_check")
    for n in range(iterations + 1):
        for mode in modes:
            capped = Stage.loop(stage, condition=always, mode=mode, max_iterations=n)
            assert_equivalent(
                f"loop(true, max_iterations={n}) {mode} == {n} copies",
                await capped.attempt(state, env=env),
                copies[n],
            )
            runs = max(n, 1) if mode == "post_check" else n
            for label, condition in zip(("sync", "async"), _below(n), strict=True):
                counted = Stage.loop(stage, condition=condition, mode=mode)
                assert_equivalent(
                    f"loop({label} iteration < {n}) {mode} == {runs} copies",
                    await counted.attempt(state, env=env),
                    copies[runs],
                )


async def check_retry(stage: Stage, state: StageState, env: Env, *, limit: int = 2) -> None:
    """`with_retry` reruns failures only, and only those it catches; for every
    `k` from 1 to `limit`:

    - `stage.with_retry(limit=0) == stage`;
    - `stage.with_retry(limit=k, catching=<matches nothing>) == stage`, after one run;
    - if `stage` succeeds, `stage.with_retry(limit=k) == stage`, after one run;
    - if `stage` fails, `stage.with_retry(limit=k)` runs it `k + 1` times and
      fails as `stage` does, up to usage: each run starts from the input plus
      the usage spent so far, so the failure holds the usage of all `k + 1`.

    No delay is given, but a rate limit's `retry_after` still waits on the
    Env's clock (see the module docstring).
    """
    if limit < 0:
        raise ValueError(f"check_retry needs limit >= 0, got {limit!r}")
    alone = await stage.attempt(state, env=env)
    assert_equivalent(
        "retry(limit=0)", await stage.with_retry(limit=0).attempt(state, env=env), alone
    )
    base = state.get(UsageTotals, _NO_USAGE)
    each = _spent(alone, state)
    for k in range(1, limit + 1):
        runs: list[int] = []
        uncaught = _counted(stage, runs).with_retry(limit=k, catching=_never_matching)
        assert_equivalent(
            f"retry(limit={k}) catching nothing", await uncaught.attempt(state, env=env), alone
        )
        _assert_runs(f"retry(limit={k}) catching nothing", runs, 1)
        runs.clear()
        retried = await _counted(stage, runs).with_retry(limit=k).attempt(state, env=env)
        if isinstance(alone, Success):
            assert_equivalent(f"retry(limit={k}) of a success", retried, alone)
            _assert_runs(f"retry(limit={k}) of a success", runs, 1)
            continue
        _assert_runs(f"retry(limit={k}) of a failure", runs, k + 1)
        _assert_equivalent_up_to_usage(f"retry(limit={k}) of a failure", retried, alone)
        expected = base
        for _ in range(k + 1):
            expected = expected.combined(each)
        _assert_usage(f"retry(limit={k}) of a failure keeps every run's usage", retried, expected)


async def check_fallback(stage: Stage, other: Stage, state: StageState, env: Env) -> None:
    """`with_fallback` runs `other` exactly when `stage` fails, on the same input:

    - if `stage` succeeds, `stage.with_fallback(other) == stage`;
    - if `stage` fails, `stage.with_fallback(other)` is `other` run on the
      input plus the usage `stage` spent;
    - `failing.with_fallback(other) == other`, for a stage failing on an `E`
      (spending nothing), also with `catching=E` (matched through the cause);
    - a `catching` that matches nothing (a type or a predicate) leaves the
      outcome of `stage`, and of `failing`, as it is;
    - `stage.with_fallback(other).with_fallback(stage) ==
      stage.with_fallback(other.with_fallback(stage))` (associativity).
    """
    alone = await stage.attempt(state, env=env)
    fallen = await stage.with_fallback(other).attempt(state, env=env)
    if isinstance(alone, Success):
        assert_equivalent("fallback of a success", fallen, alone)
    else:
        spent = _with_usage(state, _usage(alone))
        assert_equivalent("fallback of a failure", fallen, await other.attempt(spent, env=env))
    failing = _refusing()
    instead = await other.attempt(state, env=env)
    refused = await failing.attempt(state, env=env)
    assert_equivalent(
        "failing.with_fallback(other)",
        await failing.with_fallback(other).attempt(state, env=env),
        instead,
    )
    assert_equivalent(
        "failing.with_fallback(other, catching=its error)",
        await failing.with_fallback(other, catching=_Refused).attempt(state, env=env),
        instead,
    )
    for label, catching in (("a type", _Unmatched), ("a predicate", _never_matching)):
        assert_equivalent(
            f"fallback catching nothing ({label})",
            await stage.with_fallback(other, catching=catching).attempt(state, env=env),
            alone,
        )
        assert_equivalent(
            f"failing.with_fallback catching nothing ({label})",
            await failing.with_fallback(other, catching=catching).attempt(state, env=env),
            refused,
        )
    assert_equivalent(
        "fallback associativity",
        await stage.with_fallback(other).with_fallback(stage).attempt(state, env=env),
        await stage.with_fallback(other.with_fallback(stage)).attempt(state, env=env),
    )


def _recording(
    seen: list[list[Outcome]], state: StageState
) -> Callable[[Sequence[StageState | StageException]], StageState]:
    """A merge that appends the outcomes it receives to `seen` and returns `state`."""

    def merge(outcomes: Sequence[StageState | StageException]) -> StageState:
        seen.append([_as_result(outcome) for outcome in outcomes])
        return state

    return merge


async def check_concurrent(stages: Sequence[Stage], state: StageState, env: Env) -> None:
    """`Stage.concurrent` is a traversal: every branch runs as if alone on the
    input, and the merge sees the outcomes in branch order.

    - the merge is called once, with each branch's outcome, in branch order,
      equivalent to that branch run alone: no branch depends on its siblings,
      with any number of concurrent tasks (unlimited, or 1);
    - a merge returning the input state gives it with every branch's usage added;
    - `concurrent(branch, merge=<pick it>) == branch`, for each branch;
    - among all the branches, a merge picking one (returning its state, or
      raising its failure) gives that branch's outcome, with every branch's
      usage (up to usage, it is the branch alone).
    """
    branches = tuple(stages)
    if not branches:
        raise ValueError("check_concurrent needs at least one stage")
    alone = [await branch.attempt(state, env=env) for branch in branches]
    base = state.get(UsageTotals, _NO_USAGE)
    total = base
    for outcome in alone:
        total = total.combined(_spent(outcome, state))
    for tasks in (None, 1):
        seen: list[list[Outcome]] = []
        recording = _recording(seen, state)
        law = "concurrent" if tasks is None else f"concurrent(concurrent_tasks={tasks})"
        merged = await Stage.concurrent(*branches, merge=recording, concurrent_tasks=tasks).attempt(
            state, env=env
        )
        if len(seen) != 1 or len(seen[0]) != len(branches):
            raise LawViolation(
                f"{law}: the merge was called {len(seen)} times with "
                f"{[len(call) for call in seen]} outcomes, expected once with {len(branches)}"
            )
        for index, (outcome, expected) in enumerate(zip(seen[0], alone, strict=True)):
            assert_equivalent(f"{law}: branch {index} as if alone", outcome, expected)
        assert_equivalent(
            f"{law}: the merge's state with every branch's usage",
            merged,
            Success(_with_usage(state, total)),
        )

    def picking(index: int) -> Callable[[Sequence[StageState | StageException]], StageState]:
        def pick(outcomes: Sequence[StageState | StageException]) -> StageState:
            chosen = outcomes[index]
            if isinstance(chosen, StageException):
                raise chosen
            return chosen

        return pick

    for index, branch in enumerate(branches):
        assert_equivalent(
            f"concurrent(branch {index}) picking it",
            await Stage.concurrent(branch, merge=picking(0)).attempt(state, env=env),
            alone[index],
        )
        picked = await Stage.concurrent(*branches, merge=picking(index)).attempt(state, env=env)
        law = f"concurrent picking branch {index} of {len(branches)}"
        _assert_equivalent_up_to_usage(law, picked, alone[index])
        _assert_usage(f"{law} keeps every branch's usage", picked, total)
