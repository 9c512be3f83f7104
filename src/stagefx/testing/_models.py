"""Deterministic providers for tests: a script of answers, or a function of the request."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TypeAlias, final

from stagefx._content import MultimodalContent
from stagefx._conversation import ModelOutput
from stagefx._env import Env
from stagefx._model import GenerativeModel, ModelFailure, ModelRequest

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

    Example: `ScriptedModel(ModelFailure("rate_limited", "slow", retry_after=2), "ok")`
    """

    def __init__(self, *answers: Answer) -> None:
        self._answers = tuple(as_output(answer) for answer in answers)
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
