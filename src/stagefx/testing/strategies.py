"""Hypothesis strategies for stagefx values and for random stage trees.

Stage trees are built from the real combinators over deterministic leaves
(tagging the result, adding turns, failing on purpose, and on request
spending tokens as a model call would), so any two runs of a generated stage
on equal states give equivalent outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

from stagefx._core.content import ArtifactContent, MultimodalContent, TextContent
from stagefx._core.conversation import (
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    TokenUsage,
)
from stagefx._core.errors import StageException
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals
from stagefx._runtime.stage import Stage, stage

__all__ = [
    "contents",
    "contexts",
    "failing_stages",
    "json_values",
    "model_inputs",
    "model_outputs",
    "states",
    "stages",
    "tool_requests",
    "words",
]

words = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=6)
"""Short lowercase words: readable in failing examples."""

json_values: st.SearchStrategy[object] = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | words,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(words, inner, max_size=3),
    max_leaves=6,
)
"""JSON-like values: what structured output and tool arguments carry."""


def contents(*, max_parts: int = 3) -> st.SearchStrategy[MultimodalContent]:
    """Contents of text and artifact parts."""
    part = st.one_of(
        st.builds(TextContent, st.text(max_size=12)),
        st.builds(ArtifactContent, json_values),
    )
    return st.lists(part, max_size=max_parts).map(lambda parts: MultimodalContent(tuple(parts)))


def tool_requests() -> st.SearchStrategy[ModelToolRequest]:
    """Tool requests with JSON-like arguments (tool names need not exist)."""
    return st.builds(
        ModelToolRequest,
        identifier=words.map(lambda word: f"call_{word}"),
        tool=words,
        arguments=st.dictionaries(words, json_values, max_size=3),
    )


def model_inputs() -> st.SearchStrategy[ModelInput]:
    """Inputs, some of which carry tool responses."""
    response = st.builds(
        ModelToolResponse,
        identifier=words.map(lambda word: f"call_{word}"),
        tool=words,
        content=contents(max_parts=1),
        error=st.booleans(),
    )
    return st.builds(ModelInput, contents(), st.lists(response, max_size=2).map(tuple))


def model_outputs() -> st.SearchStrategy[ModelOutput]:
    """Outputs, some of which ask for tools."""
    return st.builds(ModelOutput, contents(), st.lists(tool_requests(), max_size=2).map(tuple))


def contexts(*, max_turns: int = 4) -> st.SearchStrategy[tuple[ModelInput | ModelOutput, ...]]:
    """Contexts of up to `max_turns` inputs and outputs, in any order."""
    turn = st.one_of(model_inputs(), model_outputs())
    return st.lists(turn, max_size=max_turns).map(tuple)


def states() -> st.SearchStrategy[StageState]:
    """States with a generated context and result."""
    return st.builds(StageState, context=contexts(), result=contents())


def _tag(word: str) -> Stage:
    return Stage.transform_result(lambda content: MultimodalContent.of(content, f"<{word}>"))


def _turn(word: str) -> Stage:
    return Stage.predefined(f"in:{word}", f"out:{word}")


def _fail(word: str) -> Stage:
    def refuse(content: MultimodalContent) -> MultimodalContent:
        raise ValueError(f"refused {word}")

    return Stage.transform_result(refuse)


def _spend(word: str) -> Stage:
    """Add usage to the state as a model call would: 1 input token, one output
    token per letter, to the model named `word`."""
    usage = TokenUsage(word, 1, len(word))

    @stage
    async def spend(*, state: StageState) -> StageState:
        return state.updated(state.get(UsageTotals, UsageTotals()).plus(usage))

    return spend


def _always(*, state: StageState, iteration: int) -> bool:
    """A loop condition that always holds: `max_iterations` ends the loop."""
    return True


def _first_success(branches: Sequence[StageState | StageException]) -> StageState:
    for branch in branches:
        if isinstance(branch, StageState):
            return branch
    raise ValueError("every branch failed")


def _leaves(*, failing: bool, spending: bool = False) -> st.SearchStrategy[Stage]:
    leaf = st.one_of(st.just(Stage.noop), words.map(_tag), words.map(_turn))
    if failing:
        leaf = st.one_of(leaf, words.map(_fail))
    if not spending:
        return leaf
    # About half the leaves spend first, then do their work: failures carry usage too.
    return st.tuples(st.none() | words, leaf).map(
        lambda pair: pair[1] if pair[0] is None else Stage.sequence(_spend(pair[0]), pair[1])
    )


def _compose(children: st.SearchStrategy[Stage]) -> st.SearchStrategy[Stage]:
    many = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        many.map(lambda items: Stage.sequence(*items)),
        many.map(lambda items: Stage.concurrent(*items, merge=_first_success)),
        st.tuples(children, st.booleans()).map(lambda pair: pair[0].when(pair[1])),
        st.tuples(children, children).map(lambda pair: pair[0].with_fallback(pair[1])),
        st.tuples(children, st.integers(0, 2)).map(
            lambda pair: Stage.loop(pair[0], condition=_always, max_iterations=pair[1])
        ),
        children.map(lambda item: item.ignore_result()),
        children.map(lambda item: item.extend_result()),
        children.map(lambda item: item.with_volatile_context()),
        children.map(lambda item: item.with_retry(limit=1)),
        st.tuples(children, words).map(lambda pair: pair[0].with_meta(name=pair[1])),
    )


def stages(
    *, failing: bool = True, spending: bool = False, max_leaves: int = 6
) -> st.SearchStrategy[Stage]:
    """Random, deterministic stage trees from the real combinators; with
    `failing`, some leaves fail with a `StageExecutionError`; with `spending`,
    some add token usage (`UsageTotals`) to the state, as model calls do, so
    the usage a retry, a fallback or a fan-out keeps is put to the test. No
    leaf needs a provider or a clock: any `Env` runs them."""
    leaves = _leaves(failing=failing, spending=spending)
    return st.recursive(leaves, _compose, max_leaves=max_leaves)


def failing_stages() -> st.SearchStrategy[Stage]:
    """Stages that always fail: a failing leaf, possibly wrapped."""
    return st.one_of(
        words.map(_fail),
        st.tuples(words, _leaves(failing=False)).map(
            lambda pair: Stage.sequence(pair[1], _fail(pair[0]))
        ),
        words.map(lambda word: _fail(word).with_meta(name=word)),
    )
