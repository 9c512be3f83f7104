"""Nothing but cancellation escapes `attempt()`, whatever user code throws at it."""

from __future__ import annotations

import builtins
from collections.abc import Callable, Hashable, Mapping, Sequence

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Failure, Success

from stagefx import (
    ArtifactContent,
    CacheStore,
    Env,
    GenerativeModel,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelRequest,
    ModelToolRequest,
    MultimodalContent,
    Stage,
    StageException,
    StageMeta,
    StageState,
    stage,
    tool,
)
from stagefx.testing import ScriptedModel, VirtualClock


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str exploded")

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")


class Falsy:
    """An answer whose truth value raises."""

    def __bool__(self) -> bool:
        raise UnprintableError


def hostile(kind: str) -> Exception:
    return {
        "plain": ValueError("bad"),
        "unprintable": UnprintableError(),
        "stage exception": StageException("mine", state=StageState(result="unrelated")),
        "empty": KeyError(),
    }[kind]


KINDS = st.sampled_from(["plain", "unprintable", "stage exception", "empty"])


class BrokenStore(CacheStore):
    def __init__(self, error: Exception, on: str) -> None:
        self.error, self.on = error, on

    async def load(self, key: Hashable, now: float) -> StageState | None:
        if self.on == "load":
            raise self.error
        return None

    async def store(self, key: Hashable, value: StageState, expires_at: float) -> None:
        if self.on == "store":
            raise self.error


class RaisingModel(GenerativeModel):
    def __init__(self, error: Exception) -> None:
        self.error = error

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        raise self.error


def sites(error: Exception) -> dict[str, tuple[Stage, Env]]:
    def throw(*args: object, **kwargs: object) -> object:
        raise error

    @stage
    async def custom(*, state: StageState) -> StageState:
        raise error

    @tool
    async def broken_tool(text: str) -> str:
        """A tool that fails."""
        raise error

    def merge(branches: Sequence[StageState | StageException]) -> StageState:
        raise error

    def routing(*, state: StageState, options: Mapping[str, StageMeta]) -> str:
        raise error

    ok = Stage.transform_result(lambda content: content)
    clock = VirtualClock()
    plain = Env.of(clock)
    calling = ModelOutput(tool_requests=(ModelToolRequest("1", "broken_tool", {"text": "x"}),))
    failing_then = custom.with_retry(limit=1, delay=throw)  # type: ignore[arg-type]  # raising delay
    return {
        "transform_result": (Stage.transform_result(throw), plain),  # type: ignore[arg-type]  # raising callback
        "transform_context": (Stage.transform_context(throw), plain),  # type: ignore[arg-type]  # raising callback
        "custom": (custom, plain),
        "when": (ok.when(throw), plain),  # type: ignore[arg-type]  # raising callback
        "when falsy": (ok.when(lambda *, state: Falsy()), plain),  # type: ignore[arg-type]  # hostile answer
        "loop": (Stage.loop(ok, condition=throw), plain),  # type: ignore[arg-type]  # raising callback
        "loop falsy": (Stage.loop(ok, condition=lambda *, state, iteration: Falsy()), plain),  # type: ignore[arg-type]  # hostile answer
        "merge": (Stage.concurrent(ok, custom, merge=merge), plain),
        "routing": (
            Stage.router(ok.with_meta(name="a", description="a"), routing=routing),
            plain,
        ),
        "retry delay": (failing_then, plain),
        "retry catching": (custom.with_retry(limit=1, catching=throw), plain),  # type: ignore[arg-type]  # raising predicate
        "fallback catching": (custom.with_fallback(ok, catching=lambda failure: Falsy()), plain),  # type: ignore[arg-type, return-value]  # hostile answer
        "cache load": (ok.cached(), Env.of(BrokenStore(error, "load"), clock)),
        "cache store": (ok.cached(), Env.of(BrokenStore(error, "store"), clock)),
        "model": (Stage.completion("hi"), Env.of(RaisingModel(error), clock)),
        "router model": (
            Stage.router(ok.with_meta(name="a", description="a")),
            Env.of(RaisingModel(error), clock),
        ),
        "tool": (
            Stage.completion("hi", tools=[broken_tool]),
            Env.of(ScriptedModel(calling, "done"), clock),
        ),
        "timeout": (custom.with_timeout(5), plain),
    }


SITE_NAMES = sorted(sites(ValueError()))

Wrap = Callable[[Stage], Stage]
WRAPPERS: list[Wrap] = [
    lambda inner: inner,
    lambda inner: inner.with_retry(limit=1),
    lambda inner: inner.with_fallback(Stage.noop),
    lambda inner: inner.with_meta(name="named").traced(),
    lambda inner: Stage.sequence(Stage.noop, inner, Stage.noop),
    lambda inner: Stage.concurrent(inner, Stage.noop, merge=lambda branches: StageState()),
    lambda inner: inner.with_volatile_context().extend_result(),
    lambda inner: inner.cached().with_timeout(10),
]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=100, deadline=None)
@given(
    site=st.sampled_from(SITE_NAMES),
    kind=KINDS,
    wraps=st.lists(st.sampled_from(range(len(WRAPPERS))), max_size=3),
)
def test_nothing_but_cancellation_escapes_attempt(
    backend: str, site: str, kind: str, wraps: list[int]
) -> None:
    pipeline, env = sites(hostile(kind))[site]
    for index in wraps:
        pipeline = WRAPPERS[index](pipeline)

    async def attempt() -> object:
        outcome = await pipeline.attempt(StageState(result=MultimodalContent.of("in")), env=env)
        if isinstance(outcome, Failure):
            str(outcome.failure())  # the failure itself prints, whatever it wraps
            repr(outcome.failure())
        return outcome

    outcome = anyio.run(attempt, backend=backend)
    assert isinstance(outcome, Success | Failure)


def test_a_context_transform_returning_a_tuple_of_bad_turns_fails_there() -> None:
    bad = Stage.transform_context(lambda context: ("not a turn", 42))  # type: ignore[arg-type, return-value]  # hostile on purpose
    outcome = anyio.run(bad.attempt)
    failed = outcome.failure()
    assert isinstance(failed, StageException)
    assert "ModelInput and ModelOutput" in str(failed)


EXCEPTION_TYPES = sorted(
    (
        kind
        for kind in vars(builtins).values()
        if isinstance(kind, type)
        and issubclass(kind, Exception)
        and kind.__init__ is not UnicodeError.__init__  # Unicode*Error need five arguments
        and not issubclass(kind, UnicodeError)
    ),
    key=lambda kind: kind.__name__,
)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(EXCEPTION_TYPES), site=st.sampled_from(SITE_NAMES))
def test_every_builtin_exception_with_a_broken_str_becomes_a_failure(
    backend: str, kind: type[Exception], site: str
) -> None:
    broken = type(f"Broken{kind.__name__}", (kind,), {"__str__": UnprintableError.__str__})
    try:
        error = broken()
    except Exception:  # a few need arguments
        try:
            error = broken("x")
        except Exception:  # exception groups: a message and a list of exceptions
            error = broken("x", [ValueError("inner")])
    pipeline, env = sites(error)[site]

    async def attempt() -> object:
        outcome = await pipeline.attempt(StageState(result=MultimodalContent.of("in")), env=env)
        if isinstance(outcome, Failure):
            str(outcome.failure())
        return outcome

    assert isinstance(anyio.run(attempt, backend=backend), Success | Failure)


class Incomparable:
    """An artifact value whose equality raises: combinators that compare turns meet it."""

    def __eq__(self, other: object) -> bool:
        raise UnprintableError

    __hash__ = None  # type: ignore[assignment]  # unhashable on purpose, as its __eq__ is hostile


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_value_whose_eq_raises_inside_a_combinator_becomes_a_failure(backend: str) -> None:
    def hostile() -> ModelInput:  # a new value each time: equality is asked, not identity
        return ModelInput(MultimodalContent.of(ArtifactContent(Incomparable(), "x")))

    @stage
    async def adds_a_turn(*, state: StageState) -> StageState:
        return state.updated(context=(hostile(), *state.context))

    start = StageState(context=(hostile(),))
    pipeline = adds_a_turn.with_volatile_tools_context().with_retry(limit=1)

    async def attempt() -> object:
        return await pipeline.attempt(start, env=Env.of())

    outcome = anyio.run(attempt, backend=backend)
    assert isinstance(outcome, Failure)
    assert isinstance(outcome.failure(), StageException)
    assert "UnprintableError" in str(outcome.failure())
