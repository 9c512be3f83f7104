"""The completion family: add an input, ask the model, answer its tool calls,
parse its final output into the result.

Four nodes differ only in where the input comes from: a fixed one
(`completion`), a callback (`prompting_completion`), the current result
(`result_completion`), or the model's own last output (`loopback_completion`).
Model calls go through `call_model`, the one path that spans and counts them.
"""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import ClassVar, final

import attrs

from stagefx._core.content import ArtifactContent, ContentElement, MultimodalContent
from stagefx._core.conversation import ModelContext, ModelInput, ModelOutput
from stagefx._core.errors import (
    OutputValidationError,
    StageException,
    ToolError,
    ToolRoundsExceededError,
    describe_error,
)
from stagefx._core.meta import AttributeValue
from stagefx._core.request import ModelRequest, OutputSpec
from stagefx._core.schema import ValidationFailure
from stagefx._core.state import StageState
from stagefx._env.env import Env, ctx
from stagefx._model.boundary import call_model
from stagefx._model.output import OutputSelection, Parser, output_of
from stagefx._model.toolbox import Toolbox
from stagefx._model.tools import Tool, ToolSource
from stagefx._runtime.node import Node, Outcome, SpanSpec
from stagefx._runtime.user_code import failure, require_callable, require_count, resolve

__all__ = [
    "DEFAULT_TOOL_ROUNDS",
    "Completion",
    "LoopbackCompletion",
    "PromptingCompletion",
    "ResultCompletion",
    "Settings",
]

DEFAULT_TOOL_ROUNDS = 8
"""How many times a completion lets the model ask for tools before failing."""


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Settings:
    """What every completion asks with, checked once at construction."""

    instructions: str
    toolbox: Toolbox
    tool_rounds: int
    extra: Mapping[str, object]
    output: OutputSpec
    parse: Parser | None
    output_retries: int = 0

    @classmethod
    def of(
        cls,
        *,
        instructions: object,  # a str, checked: callers may not have typed theirs
        tools: Iterable[Tool[..., object] | ToolSource],
        output: OutputSelection,
        tool_rounds: int,
        extra: Mapping[str, object],
        output_retries: int = 0,
    ) -> Settings:
        if not isinstance(instructions, str):
            raise TypeError(f"instructions must be a str, got {type(instructions).__name__}")
        require_count(tool_rounds, "tool_rounds", 0)
        require_count(output_retries, "output_retries", 0)
        spec, parse = output_of(output)
        return cls(
            instructions, Toolbox(tools), tool_rounds, dict(extra), spec, parse, output_retries
        )


class _Completion(Node):
    """The tool loop shared by the family; subclasses say where input comes from."""

    __slots__ = ()

    leaf: ClassVar[bool] = True
    settings: Settings

    def details(self) -> Mapping[str, AttributeValue]:
        settings = self.settings
        details: dict[str, AttributeValue] = {}
        if settings.toolbox.tools or settings.toolbox.sources:
            named = (*settings.toolbox.tools, *map(str, settings.toolbox.sources))
            details["tools"] = ", ".join(named)
        if settings.output.mode != "auto":
            details["output"] = settings.output.name or settings.output.mode
        if settings.output_retries:
            details["output_retries"] = settings.output_retries
        return details

    def span(self) -> SpanSpec:
        return ("completion", None)

    async def new_input(self, state: StageState) -> ModelInput | None:
        """The turn to add before asking (None: ask on the context as it is)."""
        raise NotImplementedError

    async def run(self, state: StageState, env: Env) -> Outcome:
        try:
            turn = await self.new_input(state)
        except Exception as error:
            return failure(error, state)
        context: ModelContext = state.context if turn is None else (*state.context, turn)
        return await self.converse(state, context, env)

    async def converse(self, state: StageState, context: ModelContext, env: Env) -> Outcome:
        """Ask, answer tool calls (a round's concurrently), until a final output.
        Output that does not validate is shown to the model with what is wrong,
        and it is asked again, up to `output_retries` times."""
        settings = self.settings
        spent = state
        asked = 0  # since the last plain input: tool rounds so far, plus one
        retries = 0
        toolbox = settings.toolbox
        while True:
            asked += 1
            if settings.toolbox.sources:  # an MCP server's tools, as it lists them now
                try:
                    toolbox = await settings.toolbox.resolved(env)
                except Exception as error:
                    return _unresolved(error, spent, env)
            request = ModelRequest(
                settings.instructions,
                context,
                toolbox.specs,
                settings.output,
                settings.extra,
            )
            answered = await call_model(
                request, spent, env, {"output_retry": retries} if retries else None
            )
            if not isinstance(answered, tuple):
                return answered
            answer, spent = answered
            context = (*context, answer)
            if not answer.tool_requests:
                finished = _finished(settings, spent, context, answer)
                if not isinstance(finished, OutputValidationError):
                    return finished
                if retries == settings.output_retries:
                    return finished
                retries += 1
                ctx.log_debug("output retry", attempt=retries, limit=settings.output_retries)
                context = (*context, ModelInput.of(_retry_prompt(finished)))
                asked = 0
                continue
            responses, fatal = await toolbox.respond(
                answer.tool_requests, env, spent.updated(context=context)
            )
            if fatal:
                name, cause = fatal[0]
                stopped = ToolError(f"tool {name!r} failed: {describe_error(cause)}", state=spent)
                stopped.__cause__ = cause
                return stopped.scrubbed(env.secrets())  # a tool may echo a credential
            context = (*context, ModelInput(tool_responses=responses))
            if asked > settings.tool_rounds:
                return ToolRoundsExceededError(
                    f"the model asked for tools more than {settings.tool_rounds} times in a row",
                    state=spent,
                )


def _unresolved(error: Exception, state: StageState, env: Env) -> StageException:
    """The failure of a stage whose tool sources could not say what they offer."""
    if isinstance(error, StageException):
        located = copy.copy(error)
        located.state = state
        return located.scrubbed(env.secrets())
    stopped = ToolError(f"the stage's tools are unavailable: {describe_error(error)}", state=state)
    stopped.__cause__ = error
    return stopped.scrubbed(env.secrets())


def _retry_prompt(invalid: OutputValidationError) -> str:
    """The turn that tells the model why its output was refused."""
    return f"{invalid.message}\nAnswer again, with output that fixes these errors."


def _finished(
    settings: Settings, state: StageState, context: ModelContext, answer: ModelOutput
) -> Outcome:
    if settings.parse is None:
        return state.updated(context=context, result=answer.content)
    raw = answer.content.as_string()
    try:
        value = settings.parse(raw)
    except ValidationFailure as error:
        invalid = OutputValidationError(
            f"model output is not valid {settings.output.name or settings.output.mode}: {error}",
            state=state,
            raw=raw,
        )
        invalid.__cause__ = error
        return invalid
    return state.updated(context=context, result=MultimodalContent.of(ArtifactContent(value, raw)))


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Completion(_Completion):
    """`Stage.completion(input)`: a fixed input."""

    kind: ClassVar[str] = "completion"

    settings: Settings
    turn: ModelInput

    @classmethod
    def of(cls, content: ContentElement, settings: Settings) -> Completion:
        return cls(settings, ModelInput(MultimodalContent.of(content)))

    async def new_input(self, state: StageState) -> ModelInput | None:
        return self.turn


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
def _check_prompt(
    _: object, __: object, value: Callable[[], ContentElement | Awaitable[ContentElement]]
) -> None:
    require_callable(value, "prompting_completion")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class PromptingCompletion(_Completion):
    """`Stage.prompting_completion(input)`: the input fetched by `input()` at run time."""

    kind: ClassVar[str] = "prompting_completion"

    settings: Settings
    prompt: Callable[[], ContentElement | Awaitable[ContentElement]] = attrs.field(
        validator=_check_prompt
    )

    async def new_input(self, state: StageState) -> ModelInput | None:
        return ModelInput(MultimodalContent.of(await resolve(self.prompt())))


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class ResultCompletion(_Completion):
    """`Stage.result_completion()`: the current result as the input."""

    kind: ClassVar[str] = "result_completion"

    settings: Settings

    async def new_input(self, state: StageState) -> ModelInput | None:
        return ModelInput(state.result)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class LoopbackCompletion(_Completion):
    """`Stage.loopback_completion()`: the last output given back as the input,
    replacing the last exchange (from the last input before it on, as draive
    does). Skipped, with a warning, when the context does not end with a model
    output or has no input before it."""

    kind: ClassVar[str] = "loopback_completion"

    settings: Settings

    async def new_input(self, state: StageState) -> ModelInput | None:
        return None

    async def run(self, state: StageState, env: Env) -> Outcome:
        context = state.context
        if not context or not isinstance(context[-1], ModelOutput):
            ctx.log_warning("loopback_completion skipped: the context does not end with an output")
            return state
        last_input = next(
            (
                index
                for index in range(len(context) - 2, -1, -1)
                if isinstance(context[index], ModelInput)
            ),
            None,
        )
        if last_input is None:
            ctx.log_warning("loopback_completion skipped: no input precedes the last output")
            return state
        kept = context[:last_input]
        looped = state.updated(context=(*kept, ModelInput(context[-1].content)))
        return await self.converse(looped, looped.context, env)
