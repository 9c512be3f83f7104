"""Properties of `Stage.stream` over generated pipelines on streaming models:
it finishes as `attempt` does, its deltas are what the models streamed and join
to each completion's text, and leaving at any event leaves no task and no open
model stream."""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Sequence

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from returns.result import Result

from stagefx import (
    Env,
    Finished,
    GenerativeModel,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelRequest,
    ModelStream,
    Stage,
    StageEvent,
    StageException,
    StageState,
    TextDelta,
)
from stagefx.testing import VirtualClock

SETTINGS = settings(max_examples=60, deadline=None)


class Streaming(GenerativeModel):
    """A deterministic streaming model keyed by the leaf's input word:
    `x...` streams half its text then fails; `y...` stalls a second (on the
    Env's clock) before its last delta; `z...` fails before any delta."""

    def __init__(self) -> None:
        self.streamed: dict[str, list[str]] = defaultdict(list)
        self.answered: dict[str, list[str]] = defaultdict(list)  # each whole answer's text
        self.unfinished: set[str] = set()  # leaves with an attempt that gave no answer
        self.open = 0

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        last = request.context[-1]
        word = last.content.as_string() if isinstance(last, ModelInput) else "?"
        text = f"{word} answers {len(request.context)}"
        self.open += 1
        answered = False
        try:
            if word.startswith("z"):
                yield ModelFailure("unavailable", f"{word} is down")
                return
            cut = len(text) // 2 if word.startswith("x") else len(text)
            for start in range(0, cut, 3):
                piece = text[start : min(start + 3, cut)]
                if word.startswith("y") and start + 3 >= cut:
                    await env.clock.sleep(1.0)
                self.streamed[word].append(piece)
                yield piece
            if word.startswith("x"):
                yield ModelFailure("unavailable", f"{word}'s stream was cut")
                return
            self.answered[word].append(text)
            answered = True
            yield ModelOutput.of(text)
        finally:
            self.open -= 1
            if not answered:
                self.unfinished.add(word)


def _first_success(branches: Sequence[StageState | StageException]) -> StageState:
    for branch in branches:
        if isinstance(branch, StageState):
            return branch
    raise ValueError("every branch failed")


_names = itertools.count()


def _leaf(kind: str) -> Stage:
    word = f"{kind}{next(_names)}"  # unique: each leaf's deltas carry its own name
    return Stage.completion(word).with_meta(name=word)


leaves = st.sampled_from(["a", "b", "x", "y", "z"]).map(_leaf)


def _compose(children: st.SearchStrategy[Stage]) -> st.SearchStrategy[Stage]:
    many = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        many.map(lambda items: Stage.sequence(*items)),
        many.map(lambda items: Stage.concurrent(*items, merge=_first_success)),
        st.tuples(children, children).map(lambda pair: pair[0].with_fallback(pair[1])),
        children.map(lambda item: item.with_retry(limit=1)),
        children.map(lambda item: item.with_timeout(0.5)),
        children.map(lambda item: item.with_volatile_context()),
    )


pipelines = st.recursive(leaves, _compose, max_leaves=6)


def observed(outcome: Result[StageState, StageException]) -> object:
    """An outcome as comparable data: a failure by type, message, path and state."""
    error = outcome.failure() if not isinstance(outcome.value_or(None), StageState) else None
    if isinstance(error, StageException):
        return ("failure", type(error), error.message, error.stage_path, error.state)
    return ("success", outcome.unwrap())


async def streamed(pipeline: Stage) -> tuple[list[StageEvent], Streaming]:
    model = Streaming()
    env = Env.of(model, VirtualClock())
    async with contextlib.aclosing(pipeline.stream(env=env)) as events:
        return [event async for event in events], model


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@SETTINGS
@given(pipeline=pipelines)
def test_a_stream_finishes_as_attempt_does_and_streams_what_the_models_stream(
    backend: str, pipeline: Stage
) -> None:
    async def check() -> None:
        events, model = await streamed(pipeline)
        attempted = await pipeline.attempt(env=Env.of(Streaming(), VirtualClock()))
        assert sum(isinstance(event, Finished) for event in events) == 1
        last = events[-1]
        assert isinstance(last, Finished)
        assert observed(last.outcome) == observed(attempted)
        deltas: dict[str, list[str]] = defaultdict(list)
        for event in events:
            if isinstance(event, TextDelta):
                deltas[event.stage_path[-1]].append(event.text)
        assert {word: "".join(parts) for word, parts in deltas.items()} == {
            word: "".join(parts) for word, parts in model.streamed.items()
        }
        for word, texts in model.answered.items():  # each completion's deltas join to its text
            if word not in model.unfinished:
                assert "".join(deltas[word]) == "".join(texts)
        assert model.open == 0

    anyio.run(check, backend=backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
@SETTINGS
@given(pipeline=pipelines, leave_at=st.integers(0, 40))
def test_leaving_at_any_event_leaves_no_task_and_no_open_stream(
    backend: str, pipeline: Stage, leave_at: int
) -> None:
    async def check() -> None:
        model = Streaming()
        before = len(anyio.get_running_tasks())
        seen = 0
        async with contextlib.aclosing(
            pipeline.stream(env=Env.of(model, VirtualClock()))
        ) as events:
            async for _ in events:
                if seen == leave_at:
                    break
                seen += 1
        assert model.open == 0
        assert len(anyio.get_running_tasks()) == before

    anyio.run(check, backend=backend)
