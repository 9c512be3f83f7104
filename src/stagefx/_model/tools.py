"""`@tool`: typed functions a model may call, with schemas and validated arguments."""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Generic, ParamSpec, TypeVar, cast, final, overload

import attrs

from stagefx._core.content import ArtifactContent, MultimodalContent, TextContent, jsonable
from stagefx._core.request import ToolSpec
from stagefx._core.schema import Shape, parameters_shape
from stagefx._core.state import StageState
from stagefx._env.env import Env, ambient

__all__ = [
    "MAX_RESULT_CHARS",
    "MAX_RESULT_DEPTH",
    "MAX_RESULT_DIGITS",
    "MAX_RESULT_VALUES",
    "Tool",
    "ToolContext",
    "ToolOptions",
    "ToolSource",
    "ToolUnavailable",
    "UnrenderableResult",
    "as_content",
    "running",
    "tool",
]

MAX_RESULT_DEPTH = 100
"""How deeply a tool's result may nest to be shown to the model."""
MAX_RESULT_VALUES = 1_000_000
"""How many values (in lists, tuples, sets and dicts) a tool's result may hold."""
MAX_RESULT_DIGITS = 4_300
"""The most digits an integer in a tool's result may have (CPython's default limit)."""
MAX_RESULT_CHARS = 10_000_000
"""The longest rendering of a tool's (non-text) result shown to the model."""


@final
@attrs.frozen(slots=True)
class ToolContext:
    """What a tool may know about the stage that called it: annotate a tool's
    first parameter `ToolContext` to receive it (as pydantic-ai's `RunContext`).
    That parameter is not shown to the model and not part of its arguments.

    `env`: the Env the stage runs in (`context.env.get(T)` finds a provider,
    a `with_ctx` value included). `state`: the stage's state when the model
    asked for the tool (its context holds the conversation so far).

    Example:
        ```python
        @tool
        async def tenant_name(context: ToolContext) -> str:
            tenant = context.env.get(Tenant)
            return tenant.name if tenant else "nobody"
        ```
    """

    env: Env
    state: StageState


_calling: ContextVar[ToolContext | None] = ContextVar("stagefx_tool_context", default=None)
"""The context of the tool call under way, set by `Toolbox.respond` around it."""


@contextmanager
def running(context: ToolContext) -> Generator[None, None, None]:
    """During one tool call: its context, and its Env as the ambient one."""
    token = _calling.set(context)
    try:
        with ambient(context.env):
            yield
    finally:
        _calling.reset(token)


P = ParamSpec("P")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


@final
class Tool(Generic[P, R_co]):
    """A function the model may call. Call it directly too: `await tool(1, 2)`.

    `stop_on_error`: when the tool raises (or gets bad arguments), stop the
    pipeline with a `ToolError` instead of showing the model the error.
    `shape`: the arguments' schema and check when they come from elsewhere
    (an MCP server's `tools/list`) rather than from the function's signature;
    the checked arguments are passed as keywords.
    """

    def __init__(
        self,
        function: Callable[P, R_co] | Callable[P, Awaitable[R_co]],
        *,
        name: str | None = None,
        description: str | None = None,
        stop_on_error: bool = False,
        shape: Shape[dict[str, object]] | None = None,
    ) -> None:
        if not callable(function):
            raise TypeError(f"@tool needs a function, got {type(function).__name__}")
        self.name = name or function.__name__
        self.description = description or inspect.getdoc(function) or ""
        self.stop_on_error = stop_on_error
        self._function: Callable[..., object] = function
        self._arguments, self.takes_context = (
            parameters_shape(function, self.name, context=ToolContext)
            if shape is None
            else (shape, False)
        )
        """Whether the first parameter is a `ToolContext` (stagefx's to give, not the model's)."""
        self.spec = ToolSpec(self.name, self.description, self._arguments.schema)

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co:
        return cast(R_co, await self._run(*args, **kwargs))

    async def call(
        self, arguments: Mapping[str, object], context: ToolContext | None = None
    ) -> object:
        """Validate model-given `arguments` against the schema, then call. A tool
        that takes a `ToolContext` gets `context`, else the one of the call a
        stage is making (so a `CallLayer` calling `tool.call(arguments)` passes
        it on); with neither it fails with `TypeError`."""
        validated = self._arguments.validate(dict(arguments))
        if not self.takes_context:
            return await self._run(**validated)
        given = _calling.get() if context is None else context
        if given is None:
            raise TypeError(f"tool {self.name!r} needs a ToolContext: call it from a stage")
        return await self._run(given, **validated)

    async def _run(self, *args: object, **kwargs: object) -> object:
        produced = self._function(*args, **kwargs)
        if inspect.isawaitable(produced):
            return await produced
        return produced

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"


@final
class ToolOptions:
    """`@tool(name=..., ...)`: applies the options to the function it decorates."""

    def __init__(self, name: str | None, description: str | None, stop_on_error: bool) -> None:
        self._options = (name, description, stop_on_error)

    @overload
    def __call__(self, function: Callable[P, Awaitable[R]], /) -> Tool[P, R]: ...

    @overload
    def __call__(self, function: Callable[P, R], /) -> Tool[P, R]: ...

    def __call__(self, function: Callable[..., object], /) -> Tool[..., object]:
        name, description, stop_on_error = self._options
        return Tool(function, name=name, description=description, stop_on_error=stop_on_error)


@overload
def tool(function: Callable[P, Awaitable[R]], /) -> Tool[P, R]: ...


@overload
def tool(function: Callable[P, R], /) -> Tool[P, R]: ...


@overload
def tool(
    *, name: str | None = None, description: str | None = None, stop_on_error: bool = False
) -> ToolOptions: ...


def tool(
    function: Callable[..., object] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    stop_on_error: bool = False,
) -> Tool[..., object] | ToolOptions:
    """Make a sync or async function a `Tool`: its name, its docstring as the
    description, and a JSON Schema of its annotated parameters. Use bare
    (`@tool`) or with options (`@tool(stop_on_error=True)`). A parameter without
    an annotation or with a type that has no JSON Schema is refused with
    `TypeError` here, not when the model calls it.

    Example:
        ```python
        @tool
        async def calculate(a: int, b: int) -> int:
            '''Add two numbers together.'''
            return a + b
        ```
    """
    options = ToolOptions(name, description, stop_on_error)
    return options if function is None else options(function)


class ToolSource:
    """Stands in a stage's `tools=` for tools known only when the stage runs
    (an MCP server's): `resolve` gives them for the Env the stage runs in, at
    each round of the tool loop (so a source may change its list)."""

    async def resolve(self, env: Env) -> Sequence[Tool[..., object]]:
        """The tools this source offers now; raising fails the stage with a `ToolError`."""
        raise NotImplementedError


class ToolUnavailable(Exception):
    """A tool could not be run because what serves it failed (an MCP server
    that died or hung): the stage stops with a `ToolError`, whatever
    `stop_on_error` says, since the model cannot fix it."""


class UnrenderableResult(ValueError):
    """A tool's result cannot be shown to the model: the model is told why."""


def as_content(value: object) -> MultimodalContent:
    """A tool's result as content: text as is, any other value as an artifact
    rendered as JSON (else its `repr`), within bounds; `UnrenderableResult` or
    the rendering's own exception when it cannot be shown."""
    if isinstance(value, MultimodalContent):
        return value
    if isinstance(value, str):
        return MultimodalContent((TextContent(value),))
    return MultimodalContent((ArtifactContent(value, _rendered(value)),))


_MAX_BITS = int(MAX_RESULT_DIGITS * 3.3219280948873626)  # log2(10)
_CONTAINERS = (list, tuple, dict, set, frozenset)


def _check_bounds(value: object) -> None:
    """Refuse builtin containers nested more than `MAX_RESULT_DEPTH` deep or too
    large, and huge integers: level by level, no recursion."""
    level: list[object] = [value]
    depth = 0  # of the containers in `level`
    seen = 0
    while level:
        depth += 1
        below: list[object] = []
        for item in level:
            if isinstance(item, int):
                if item.bit_length() > _MAX_BITS:
                    raise UnrenderableResult(f"an integer has more than {MAX_RESULT_DIGITS} digits")
                continue
            if not isinstance(item, _CONTAINERS):
                continue
            if depth > MAX_RESULT_DEPTH:
                raise UnrenderableResult(f"it is nested more than {MAX_RESULT_DEPTH} deep")
            if isinstance(item, dict):
                below += item.keys()
                below += item.values()
            else:
                below += item
        seen += len(below)
        if seen > MAX_RESULT_VALUES:
            raise UnrenderableResult(f"it holds more than {MAX_RESULT_VALUES:,} values")
        level = below


def _bounded_jsonable(value: object) -> object:
    plain = jsonable(value)  # an attrs, pydantic or dataclass value as plain data
    _check_bounds(plain)
    return plain


def _rendered(value: object) -> str:
    _check_bounds(value)
    try:
        text = json.dumps(value, default=_bounded_jsonable, ensure_ascii=False)
    except UnrenderableResult:
        raise
    except RecursionError as error:
        raise UnrenderableResult(f"it is nested more than {MAX_RESULT_DEPTH} deep") from error
    except (TypeError, ValueError):  # no JSON for it: its repr (which may raise)
        text = repr(value)
    if len(text) > MAX_RESULT_CHARS:
        raise UnrenderableResult(f"it renders to more than {MAX_RESULT_CHARS:,} characters")
    return text
