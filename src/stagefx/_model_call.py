"""The one path every model call takes: completions and the default router alike.

It finds the Env's model, opens the "generate" span, passes the call through
the Env's `CallLayer`s if it has any (a `Recorder`, `RateLimits`, DBOS steps;
the chain is worked out once per Env), lifts a
`ModelFailure` or a raised exception into a failure value, and adds the usage
the answer reports to the state, so the state's `UsageTotals` and the trace
always agree.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Mapping
from typing import ClassVar, TypeAlias, final

from stagefx._conversation import ModelOutput
from stagefx._env import Env, derived
from stagefx._errors import StageException
from stagefx._model import GenerativeModel, ModelFailure, ModelRequest, missing_model, model_error
from stagefx._nodes._calls import failure
from stagefx._state import StageState
from stagefx._tracing import close_span, close_span_raised, open_span
from stagefx._usage import UsageTotals, record_spend

__all__ = ["CallLayer", "call_model"]


class CallLayer:
    """A role every model call under an Env passes through, model or not.

    Subclass it to stand between stages and the model (a `Recorder` replays
    calls without any model; `RateLimits` paces them). Layers nest by `depth`,
    smallest outermost (a Recorder, 0, replays before rate limits, 10, are
    consulted), then by their order in the Env. A `StageException` a layer
    raises becomes the stage's failure, carrying the stage's state.
    """

    depth: ClassVar[int] = 50

    async def call(
        self, request: ModelRequest, env: Env, model: GenerativeModel | None
    ) -> ModelOutput | ModelFailure:
        """Answer `request`, asking `model` (the Env's, if any) where needed."""
        raise NotImplementedError(f"{type(self).__name__} must define call()")


async def call_model(
    request: ModelRequest,
    state: StageState,
    env: Env,
    attributes: Mapping[str, str | int | bool] | None = None,
) -> tuple[ModelOutput, StageState] | StageException:
    """Ask the Env's model; the answer and `state` with its usage added, or a
    failure carrying `state` (and so the usage spent before this call).
    `attributes` are added to the call's span (an output retry's number)."""
    model, layer, inner = derived(env, _plan)
    if model is None and layer is None:
        return missing_model(state)
    if not env.tracer_active:
        try:
            answer = await _asked(request, env, model, layer, inner)
        except Exception as error:
            return _failed(error, state)
        return _settled(answer, state)
    span = open_span(env.tracer, env.clock.now, "generate")
    if attributes:
        span.attributes.update(attributes)
    try:
        answer = await _asked(request, env, model, layer, inner)
    except Exception as error:
        outcome = _failed(error, state)
        close_span(span, outcome)
        return outcome
    except BaseException as error:
        close_span_raised(span, error)
        raise
    settled = _settled(answer, state)
    if isinstance(settled, StageException):
        if isinstance(answer, ModelFailure):
            span.attributes["failure"] = answer.kind
        close_span(span, settled)
        return settled
    output = settled[0]
    if output.usage is not None:
        span.attributes.update(
            model=output.usage.model,
            input_tokens=output.usage.input_tokens,
            output_tokens=output.usage.output_tokens,
        )
    span.attributes["tool_requests"] = len(output.tool_requests)
    if output.finish_reason:
        span.attributes["finish_reason"] = output.finish_reason
    close_span(span, output)
    return settled


@final
class _Through(GenerativeModel):
    """A layer and what it passes calls to, seen as one model by the layer
    outside it; built once per Env, so a layer may key caches by it."""

    def __init__(self, layer: CallLayer, inner: GenerativeModel, model: GenerativeModel) -> None:
        self.layer = layer
        self.inner = inner
        self.model = model

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        return await self.layer.call(request, env, self.inner)

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        return self.model.fingerprint(env)

    def secrets(self) -> tuple[str, ...]:
        return self.model.secrets()


_Plan: TypeAlias = tuple[GenerativeModel | None, CallLayer | None, GenerativeModel | None]


def _plan(env: Env) -> _Plan:
    """The Env's model, its outermost `CallLayer` and what that layer passes
    calls to: the layers inside it over the model (with no model, the layers
    inside have nothing to pass a call to). Worked out once per Env."""
    model = env.get(GenerativeModel)
    layers = [provider for provider in env.providers if isinstance(provider, CallLayer)]
    if not layers:
        return model, None, model
    if len(layers) > 1:  # a lone layer's depth is never asked for
        layers.sort(key=_depth)  # stable: Env order within a depth
    if model is None:
        return None, layers[0], None
    inner: GenerativeModel = model
    for layer in reversed(layers[1:]):
        inner = _Through(layer, inner, model)
    return model, layers[0], inner


def _depth(layer: CallLayer) -> int:
    return layer.depth


def _asked(
    request: ModelRequest,
    env: Env,
    model: GenerativeModel | None,
    layer: CallLayer | None,
    inner: GenerativeModel | None,
) -> Awaitable[object]:
    if layer is None:
        assert model is not None  # checked by the caller
        return model.generate(request, env)
    return layer.call(request, env, inner)


def _failed(error: Exception, state: StageState) -> StageException:
    if isinstance(error, StageException):  # a layer's own failure: give it the stage's state
        located = copy.copy(error)
        located.state = state
        return located
    return failure(error, state)


def _settled(answer: object, state: StageState) -> tuple[ModelOutput, StageState] | StageException:
    if isinstance(answer, ModelFailure):
        return model_error(answer, state)
    if not isinstance(answer, ModelOutput):
        wrong = TypeError(
            f"a model's generate() must return ModelOutput or ModelFailure, "
            f"got {type(answer).__name__}"
        )
        return failure(wrong, state)
    if answer.usage is None:
        return answer, state
    record_spend(answer.usage)
    return answer, state.updated(state.get(UsageTotals, UsageTotals()).plus(answer.usage))
