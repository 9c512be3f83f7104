"""`Toolbox`: the tools one completion may use, run as the model asks, each
call through the model boundary, its failure an answer the model reads."""

from __future__ import annotations

from collections.abc import Iterable
from typing import cast, final

import anyio

from stagefx._core.conversation import ModelToolRequest, ModelToolResponse
from stagefx._core.errors import describe_error
from stagefx._core.schema import ValidationFailure
from stagefx._core.secrets import scrub
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.events import ToolAnswered, ToolCalled
from stagefx._env.tracing import close_span, close_span_raised, is_tracing, open_span
from stagefx._model.boundary import call_tool
from stagefx._model.tools import (
    Tool,
    ToolContext,
    ToolSource,
    ToolUnavailable,
    UnrenderableResult,
    as_content,
    running,
)

__all__ = ["Toolbox"]


def _unshowable(name: str, failure: Exception) -> str:
    why = str(failure) if type(failure) is UnrenderableResult else describe_error(failure)
    return f"{name} returned a result that cannot be shown: {why}"


@final
class Toolbox:
    """The tools one completion may use, by name, and the sources (MCP servers)
    whose tools join them when the stage runs."""

    def __init__(self, tools: Iterable[Tool[..., object] | ToolSource]) -> None:
        self.tools: dict[str, Tool[..., object]] = {}
        sources: list[ToolSource] = []
        for item in tools:
            if isinstance(cast(object, item), ToolSource):
                sources.append(cast(ToolSource, item))
                continue
            if not isinstance(cast(object, item), Tool):  # callers may not have typed theirs
                raise TypeError(f"tools must be @tool functions, got {type(item).__name__}")
            one = cast(Tool[..., object], item)
            if one.name in self.tools:
                raise ValueError(f"two tools are named {one.name!r}")
            self.tools[one.name] = one
        self.sources = tuple(sources)
        self.specs = tuple(item.spec for item in self.tools.values())

    async def resolved(self, env: Env) -> Toolbox:
        """This toolbox with its sources' tools as they are now (itself without
        sources); `ValueError` naming a tool offered twice."""
        if not self.sources:
            return self
        found: list[Tool[..., object]] = list(self.tools.values())
        for source in self.sources:
            found.extend(await source.resolve(env))
        return Toolbox(found)

    async def respond(
        self, requests: tuple[ModelToolRequest, ...], env: Env, state: StageState
    ) -> tuple[tuple[ModelToolResponse, ...], tuple[tuple[str, Exception], ...]]:
        """Run every requested call concurrently. Returns the responses in request
        order, and the errors of tools that must stop the pipeline. During each
        call `env` is ambient (`ctx.current()`), and a tool taking a
        `ToolContext` gets `env` and `state`."""
        responses: list[ModelToolResponse | None] = [None] * len(requests)
        context = ToolContext(env, state)
        fatal: list[tuple[str, Exception]] = []
        events = env.events

        async def answer(index: int, request: ModelToolRequest) -> None:
            if events is not None:
                events.emit(ToolCalled(request, events.path))
            if not is_tracing(env.tracer):
                await respond_to(index, request)
            else:
                await traced(index, request)
            if events is not None:
                events.emit(ToolAnswered(cast(ModelToolResponse, responses[index]), events.path))

        async def traced(index: int, request: ModelToolRequest) -> None:
            span = open_span(env.tracer, env.clock.now, f"tool {request.tool}")
            try:
                await respond_to(index, request)
            except BaseException as error:
                close_span_raised(span, error)
                raise
            response = responses[index]
            span.attributes["error"] = response is not None and response.error
            close_span(span, None)

        async def respond_to(index: int, request: ModelToolRequest) -> None:
            found = self.tools.get(request.tool)
            if found is None:
                available = ", ".join(sorted(self.tools)) or "none"
                text, error = f"unknown tool {request.tool!r}; available tools: {available}", True
            else:
                try:
                    with running(context):
                        text_or_value = await call_tool(found, request, context)
                except ValidationFailure as failure:
                    text, error = f"invalid arguments for {found.name}: {failure}", True
                    if found.stop_on_error:
                        fatal.append((found.name, failure))
                except Exception as failure:
                    text, error = f"{found.name} failed: {describe_error(failure)}", True
                    if found.stop_on_error or isinstance(failure, ToolUnavailable):
                        fatal.append((found.name, failure))
                else:
                    try:
                        content = as_content(text_or_value)
                    except Exception as failure:  # a huge, deep or unprintable result
                        text, error = _unshowable(found.name, failure), True
                        if found.stop_on_error:
                            fatal.append((found.name, failure))
                    else:
                        responses[index] = ModelToolResponse(
                            request.identifier, request.tool, content
                        )
                        return
            shown = scrub(text, env.secrets())  # a tool may echo a credential it was given
            responses[index] = ModelToolResponse(
                request.identifier, request.tool, as_content(shown), error=error
            )

        if len(requests) == 1:
            await answer(0, requests[0])
        else:
            async with anyio.create_task_group() as group:
                for index, request in enumerate(requests):
                    group.start_soon(answer, index, request)
        return tuple(cast(list[ModelToolResponse], responses)), tuple(fatal)
