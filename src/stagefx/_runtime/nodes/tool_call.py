"""`tool_call`: call one tool directly and record the exchange in the context."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, final

import attrs

from stagefx._core.conversation import ModelInput, ModelOutput, ModelToolRequest
from stagefx._core.errors import ToolError, describe_error
from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._model.toolbox import Toolbox
from stagefx._model.tools import Tool
from stagefx._runtime.node import Node, Outcome, SpanSpec

__all__ = ["ToolCall"]


def _check_tool(_: object, __: object, value: object) -> None:
    if not isinstance(value, Tool):
        raise TypeError(f"Stage.tool_call needs a @tool, got {type(value).__name__}")


# Passed to attrs.field: pyright cannot type attrs' `@field.default` decorators.
def _toolbox(node: ToolCall) -> Toolbox:
    return Toolbox((node.tool,))


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class ToolCall(Node):
    """Call `tool` with `arguments` (validated as a model's would be) and append
    the request and its response to the context, as the model's own calls
    are; the result is untouched. A failing tool's error becomes the response
    (the model will read it), unless the tool stops on errors: then the stage
    fails with `ToolError`. The request's id is made from the tool's name and
    the context's length, so equal states give equal contexts (replays match)."""

    kind: ClassVar[str] = "tool_call"
    leaf: ClassVar[bool] = True

    tool: Tool[..., object] = attrs.field(validator=_check_tool)
    arguments: Mapping[str, object]
    toolbox: Toolbox = attrs.field(init=False, default=attrs.Factory(_toolbox, takes_self=True))

    def details(self) -> Mapping[str, AttributeValue]:
        return {"tool": self.tool.name}

    def span(self) -> SpanSpec:
        return ("tool_call", {"tool": self.tool.name})

    async def run(self, state: StageState, env: Env) -> Outcome:
        request = ModelToolRequest(
            f"{self.tool.name}-{len(state.context)}", self.tool.name, self.arguments
        )
        responses, fatal = await self.toolbox.respond((request,), env, state)
        if fatal:
            name, cause = fatal[0]
            stopped = ToolError(f"tool {name!r} failed: {describe_error(cause)}", state=state)
            stopped.__cause__ = cause
            return stopped.scrubbed(env.secrets())  # a tool may echo a credential
        return state.updated(
            context=(
                *state.context,
                ModelOutput(tool_requests=(request,)),
                ModelInput(tool_responses=responses),
            )
        )
