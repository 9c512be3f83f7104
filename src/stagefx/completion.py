"""Completion steps: ask the Env's model, run the tools it asks for, parse its output."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Literal, TypeAlias, final

import yaml

from stagefx.combinators._step import Outcome, Step, failure, require_count, resolve
from stagefx.combinators.meta import in_span
from stagefx.content import ArtifactContent, ContentElement, MultimodalContent
from stagefx.conversation import ModelContext, ModelInput, ModelOutput
from stagefx.env import Env, ctx
from stagefx.errors import (
    OutputValidationError,
    RoutingError,
    StageException,
    ToolError,
    ToolRoundsExceededError,
)
from stagefx.model import (
    GenerativeModel,
    ModelFailure,
    ModelRequest,
    OutputSpec,
    missing_model,
    model_error,
    model_of,
)
from stagefx.schema import SchemaError, Shape, ValidationFailure
from stagefx.state import StageState
from stagefx.structure import Detail, StageNode
from stagefx.tools import Tool, Toolbox
from stagefx.tracing import close_span, close_span_raised, is_tracing, open_span
from stagefx.usage import UsageTotals

__all__ = [
    "DEFAULT_TOOL_ROUNDS",
    "Completion",
    "InputSource",
    "OutputSelection",
    "completion",
    "model_routing",
]

DEFAULT_TOOL_ROUNDS = 8
"""How many times a completion lets the model ask for tools before failing."""

OutputSelection: TypeAlias = Literal["auto", "text", "json", "yaml"] | type[object]
"""`output=`: free text, any JSON / YAML value, or a type to validate against."""

InputSource: TypeAlias = Callable[[StageState], Awaitable[ModelInput | None]]
"""Where a completion's new input comes from, given the state (None: no new input)."""


@final
class Completion:
    """The settings of one completion stage, checked once at construction."""

    def __init__(
        self,
        *,
        instructions: str,
        tools: Iterable[Tool[..., object]],
        output: OutputSelection,
        tool_rounds: int,
        extra: Mapping[str, object],
    ) -> None:
        if not isinstance(instructions, str):
            raise TypeError(f"instructions must be a str, got {type(instructions).__name__}")
        require_count(tool_rounds, "tool_rounds", 0)
        self.instructions = instructions
        self.toolbox = Toolbox(tools)
        self.tool_rounds = tool_rounds
        self.extra = dict(extra)
        self.output, self.parse = _output(output)

    def node(self, kind: str) -> StageNode:
        """How `describe()` shows a completion with these settings."""
        details: dict[str, Detail] = {}
        if self.toolbox.tools:
            details["tools"] = ", ".join(self.toolbox.tools)
        if self.output.mode != "auto":
            details["output"] = self.output.name or self.output.mode
        return StageNode(kind, details=details)


def _output(
    selection: OutputSelection,
) -> tuple[OutputSpec, Callable[[str], object] | None]:
    """The spec sent to the model and the parser for its text (None: keep text)."""
    if selection in ("auto", "text"):
        return OutputSpec(mode=selection), None
    if selection == "json":
        return OutputSpec(mode="json"), _parse_json
    if selection == "yaml":
        return OutputSpec(mode="yaml"), _parse_yaml
    if isinstance(selection, type):
        try:
            shape = Shape.of(selection)
        except SchemaError as error:
            raise TypeError(f"output={selection.__name__} cannot be described: {error}") from error

        def parse(text: str) -> object:
            return shape.validate(_parse_json(text))

        return OutputSpec(mode="schema", schema=shape.schema, name=shape.name), parse
    raise ValueError(f"output must be 'auto', 'text', 'json', 'yaml' or a type, got {selection!r}")


_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n?```\s*$", re.S)


def _unfenced(text: str) -> str:
    match = _FENCE.match(text)
    return match.group(1) if match else text


def _parse_json(text: str) -> object:
    try:
        return json.loads(_unfenced(text))
    except json.JSONDecodeError as error:
        raise ValidationFailure(f"not JSON: {error}") from error


def _parse_yaml(text: str) -> object:
    try:
        return yaml.safe_load(_unfenced(text))  # safe_load: never constructs arbitrary objects
    except yaml.YAMLError as error:
        raise ValidationFailure(f"not YAML: {error}") from error


def completion(settings: Completion, source: InputSource) -> Step:
    """A completion step: add the input from `source`, ask the model, answer its
    tool calls (all of a round concurrently) until it gives a final output,
    then parse that output into the result."""

    async def run(state: StageState, env: Env) -> Outcome:
        model = model_of(env)
        if model is None:
            return missing_model(state)
        try:
            turn = await source(state)
        except Exception as error:
            return failure(error, state)
        context: ModelContext = state.context if turn is None else (*state.context, turn)
        usage = state.get(UsageTotals, UsageTotals())
        for _ in range(settings.tool_rounds + 1):
            request = ModelRequest(
                settings.instructions,
                context,
                settings.toolbox.specs,
                settings.output,
                settings.extra,
            )
            try:
                answer = await _generate(model, request, env)
            except Exception as error:
                return failure(error, state)
            if isinstance(answer, ModelFailure):
                return model_error(answer, state)
            if answer.usage is not None:
                usage = usage.plus(answer.usage)
            context = (*context, answer)
            if not answer.tool_requests:
                return _finished(settings, state.updated(usage), context, answer)
            responses, fatal = await settings.toolbox.respond(answer.tool_requests, env)
            if fatal:
                name, cause = fatal[0]
                stopped = ToolError(
                    f"tool {name!r} failed: {type(cause).__name__}: {cause}", state=state
                )
                stopped.__cause__ = cause
                return stopped
            context = (*context, ModelInput(tool_responses=responses))
        return ToolRoundsExceededError(
            f"the model asked for tools more than {settings.tool_rounds} times in a row",
            state=state,
        )

    return run


def build(
    kind: str,
    source: InputSource,
    *,
    instructions: str,
    tools: Iterable[Tool[..., object]],
    output: OutputSelection,
    tool_rounds: int,
    extra: Mapping[str, object],
) -> tuple[Step, StageNode]:
    """A completion step (under a "completion" span) and how `describe()` shows it."""
    settings = Completion(
        instructions=instructions, tools=tools, output=output, tool_rounds=tool_rounds, extra=extra
    )
    return in_span(completion(settings, source), "completion"), settings.node(kind)


async def _generate(
    model: GenerativeModel, request: ModelRequest, env: Env
) -> ModelOutput | ModelFailure:
    """One model call, under a "generate" span carrying its usage."""
    if not is_tracing(env.tracer):
        return await model.generate(request, env)
    span = open_span(env.tracer, env.clock.now, "generate")
    try:
        answer = await model.generate(request, env)
    except BaseException as error:
        close_span_raised(span, error)
        raise
    if isinstance(answer, ModelFailure):
        span.attributes["failure"] = answer.kind
        close_span(span, model_error(answer, StageState.empty))
        return answer
    if answer.usage is not None:
        span.attributes.update(
            model=answer.usage.model,
            input_tokens=answer.usage.input_tokens,
            output_tokens=answer.usage.output_tokens,
        )
    span.attributes["tool_requests"] = len(answer.tool_requests)
    if answer.finish_reason:
        span.attributes["finish_reason"] = answer.finish_reason
    close_span(span, answer)
    return answer


def _finished(
    settings: Completion, state: StageState, context: ModelContext, answer: ModelOutput
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


def fixed_input(content: ContentElement) -> InputSource:
    turn = ModelInput(MultimodalContent.of(content))

    async def source(state: StageState) -> ModelInput:
        return turn

    return source


def prompted_input(
    prompt: Callable[[], ContentElement | Awaitable[ContentElement]],
) -> InputSource:
    if not callable(prompt):
        raise TypeError(f"prompting_completion needs a callable, got {type(prompt).__name__}")

    async def source(state: StageState) -> ModelInput:
        return ModelInput(MultimodalContent.of(await resolve(prompt())))

    return source


async def result_input(state: StageState) -> ModelInput:
    """The current result as the next input."""
    return ModelInput(state.result)


def loopback(step: Step) -> Step:
    """Replace the last input/output pair by the output given back as input, then
    run `step` (a completion with no new input). Skipped, with a warning, when
    the context does not end with a model output."""

    async def run(state: StageState, env: Env) -> Outcome:
        context = state.context
        if not context or not isinstance(context[-1], ModelOutput):
            ctx.log_warning("loopback_completion skipped: the context does not end with an output")
            return state
        last = context[-1]
        kept = context[:-2] if len(context) >= 2 else ()
        return await step(state.updated(context=(*kept, ModelInput(last.content))), env)

    return run


async def no_input(state: StageState) -> None:
    return None


async def model_routing(
    state: StageState, env: Env, routes: Mapping[str, str]
) -> str | StageException:
    """Ask the Env's model to pick a route by name, seeing names and descriptions."""
    model = model_of(env)
    if model is None:
        return missing_model(state)
    listing = "\n".join(f"- {name}: {description}" for name, description in routes.items())
    request = ModelRequest(
        instructions=(
            "Choose the route that best handles the conversation so far. "
            "Answer with the route's name only, exactly as written.\nRoutes:\n" + listing
        ),
        context=(*state.context, ModelInput.of(state.result))
        if not state.result.is_empty
        else state.context,
        output=OutputSpec(mode="text"),
    )
    try:
        answer = await model.generate(request, env)
    except Exception as error:
        return failure(error, state)
    if isinstance(answer, ModelFailure):
        return model_error(answer, state)
    said = answer.content.as_string().strip().strip("`'\".").strip()
    by_lower = {name.lower(): name for name in routes}
    chosen = by_lower.get(said.lower())
    if chosen is None:
        return RoutingError(
            f"the model answered {said!r}, which names none of the routes {sorted(routes)}",
            state=state,
        )
    return chosen
