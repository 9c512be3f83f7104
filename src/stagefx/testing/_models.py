"""Deterministic providers for tests: a script of answers, or a function of the request."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeAlias, cast, final

from stagefx._core.content import MultimodalContent
from stagefx._core.conversation import ModelOutput
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._env.env import Env
from stagefx._model.generative import GenerativeModel, ModelStream

__all__ = ["Answer", "FunctionModel", "ScriptedModel", "as_output"]

Answer: TypeAlias = str | MultimodalContent | ModelOutput | ModelFailure
"""What a test model may answer: text, content, a full output (with tool
requests), or a failure such as `ModelFailure("rate_limited", ..., retry_after=2)`."""


def as_output(answer: object) -> ModelOutput | ModelFailure:
    """The `Answer` a test gave (or its function returned), checked: it may be untyped."""
    if isinstance(answer, ModelOutput | ModelFailure):
        return answer
    if isinstance(answer, str | MultimodalContent):
        return ModelOutput(MultimodalContent.of(answer))
    raise TypeError(f"a test model cannot answer with {type(answer).__name__}")


@final
class ScriptedModel(GenerativeModel):
    """Answers each call with the next scripted answer; records every request.

    Running out of answers is a test bug and fails loudly with the count.
    Streamed, an answer's text comes in deltas of `chunk_size` characters
    (None: whole, as one delta).

    Example: `ScriptedModel(ModelFailure("rate_limited", "slow", retry_after=2), "ok")`
    """

    def __init__(self, *answers: Answer, chunk_size: int | None = None) -> None:
        if chunk_size is not None and (
            isinstance(chunk_size, bool)
            or not isinstance(cast(object, chunk_size), int)
            or chunk_size < 1
        ):
            raise ValueError(
                f"ScriptedModel(chunk_size=...) needs an int >= 1 or None, got {chunk_size!r}"
            )
        self._answers = tuple(as_output(answer) for answer in answers)
        self._chunk_size = chunk_size
        self.requests: list[ModelRequest] = []

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        """Record `request`; answer with the next scripted answer."""
        self.requests.append(request)
        if len(self.requests) > len(self._answers):
            raise LookupError(
                f"ScriptedModel ran out of answers: call {len(self.requests)} "
                f"but only {len(self._answers)} scripted"
            )
        return self._answers[len(self.requests) - 1]

    async def stream(self, request: ModelRequest, env: Env) -> ModelStream:
        """The next scripted answer, its text in deltas of `chunk_size` characters."""
        answer = await self.generate(request, env)
        if isinstance(answer, ModelOutput) and self._chunk_size is not None:
            text = answer.content.as_string()
            for start in range(0, len(text), self._chunk_size):
                yield text[start : start + self._chunk_size]
        yield answer

    @property
    def remaining(self) -> int:
        """Scripted answers not used yet."""
        return max(len(self._answers) - len(self.requests), 0)


@final
class FunctionModel(GenerativeModel):
    """Answers each call with `function(request)` (sync or async); records requests.

    Example: `FunctionModel(lambda request: request.context[-1].content)`
    """

    def __init__(self, function: Callable[[ModelRequest], Answer | Awaitable[Answer]]) -> None:
        if not callable(function):
            raise TypeError(f"FunctionModel needs a callable, got {type(function).__name__}")
        self._function = function
        self.requests: list[ModelRequest] = []

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        """Record `request`; answer with `function(request)`."""
        self.requests.append(request)
        answer = self._function(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return as_output(answer)
