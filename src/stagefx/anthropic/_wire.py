"""Pieces the provider's codec and the fake server's share: JSON access,
thinking blocks kept in an answer's `provider_data`, and the tool that carries
structured output.

The `openai` package's equivalents are not imported: `stagefx.openai`
needs the `openai` SDK, and this provider must not.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeGuard, cast

import attrs

from stagefx._core.conversation import ModelOutput
from stagefx._core.request import OutputSpec

__all__ = [
    "INVALID_ARGUMENTS",
    "JSON",
    "PROVIDER",
    "OutputTool",
    "ANSWER_TOOL",
    "ANSWER_TOOL_JSON",
    "ANSWER_TOOL_WRAPPED",
    "answer_text",
    "arguments_of",
    "is_thinking",
    "output_tool",
    "thinking_blocks",
    "thinking_data",
    "tool_input",
]

JSON = dict[str, object]

PROVIDER: Final = "anthropic"
"""The key of this provider's entry in a `ModelOutput.provider_data`:
`{"anthropic": {"thinking": [block, ...]}}`, the answer's `thinking` and
`redacted_thinking` blocks exactly as the API gave them, in order.

With extended thinking and tools, Anthropic needs the assistant's thinking
blocks (with their `signature`) sent back unchanged, first in its turn. They
are not what the model said, so they are kept out of the answer's content;
`provider_data` is plain JSON, so cassettes and durable steps keep it."""

_THINKING_TYPES = frozenset({"thinking", "redacted_thinking"})


def is_thinking(block: Mapping[str, object]) -> bool:
    """Whether `block` is a `thinking` or `redacted_thinking` block."""
    return block.get("type") in _THINKING_TYPES


def thinking_data(blocks: Sequence[Mapping[str, object]]) -> JSON:
    """The `provider_data` that keeps the thinking `blocks` (see `PROVIDER`);
    empty when there are none."""
    if not blocks:
        return {}
    return {PROVIDER: {"thinking": [dict(block) for block in blocks]}}


def thinking_blocks(output: ModelOutput) -> list[JSON]:
    """The thinking blocks `output` keeps (see `PROVIDER`), in order; what is
    not one (another provider's data, say) is left out."""
    kept = output.provider_data.get(PROVIDER)
    if not _str_keyed(kept):
        return []
    found = kept.get("thinking")
    if not isinstance(found, list | tuple):
        return []
    return [
        dict(block)
        for block in cast("Sequence[object]", found)
        if _str_keyed(block) and is_thinking(block)
    ]


@attrs.frozen(slots=True)
class OutputTool:
    """The tool structured output is asked through: the model's answer is
    its input. A schema that is not an object's is wrapped (`{"value": ...}`),
    as a tool's input must be an object."""

    name: str
    description: str
    input_schema: JSON
    wrapped: bool


ANSWER_TOOL: Final = "Give your final answer with this tool: its input is the answer."
ANSWER_TOOL_WRAPPED: Final = (
    "Give your final answer with this tool: its input's `value` is the answer."
)
ANSWER_TOOL_JSON: Final = (
    "Give your final answer with this tool: its input is the answer, a JSON object."
)


def output_tool(output: OutputSpec, taken: Iterable[str]) -> OutputTool | None:
    """The tool for `output` (None when the answer is free text), named so
    that it differs from every name in `taken` (the request's tools)."""
    names = set(taken)
    base = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in output.name or "output")
    name = base[:60] or "output"
    while name in names:
        name = f"{name}_answer"[-64:]
    if output.mode == "json":
        return OutputTool(name, ANSWER_TOOL_JSON, {"type": "object"}, wrapped=False)
    if output.mode != "schema" or output.schema is None:
        return None
    schema = dict(output.schema)
    if schema.get("type") == "object":
        return OutputTool(name, ANSWER_TOOL, schema, wrapped=False)
    wrapped: JSON = {"type": "object", "properties": {"value": schema}, "required": ["value"]}
    return OutputTool(name, ANSWER_TOOL_WRAPPED, wrapped, wrapped=True)


def answer_text(tool: OutputTool, arguments: object) -> str:
    """The answer's text given the output tool's input: that input as JSON
    (its `value` when wrapped)."""
    value = arguments
    if tool.wrapped and isinstance(arguments, Mapping):
        value = cast("Mapping[str, object]", arguments).get("value")
    return json.dumps(value, ensure_ascii=False)


INVALID_ARGUMENTS: Final = "(arguments are not a JSON object)"
"""The one key of a `ModelToolRequest`'s arguments when the model's input is
not a JSON object (the same marker the OpenAI provider uses): the tool's
validation refuses it and the model gets an error it can correct."""


def _str_keyed(value: object) -> TypeGuard[Mapping[str, object]]:
    return isinstance(value, Mapping) and all(
        isinstance(key, str) for key in cast("Mapping[object, object]", value)
    )


def arguments_of(raw: object) -> dict[str, object]:
    """Tool-call arguments from a `tool_use` block's `input` (an object), or
    from its streamed JSON text; anything else as `{INVALID_ARGUMENTS: ...}`."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if isinstance(raw, str):
        try:
            parsed: object = json.loads(raw)
        except (ValueError, RecursionError):  # bad JSON, too deep, too many digits
            return {INVALID_ARGUMENTS: raw}
        if _str_keyed(parsed):
            return dict(parsed)
        return {INVALID_ARGUMENTS: raw}
    if _str_keyed(raw):
        return dict(raw)
    return {INVALID_ARGUMENTS: f"<{type(raw).__name__}>"}


def tool_input(arguments: Mapping[str, object]) -> object:
    """A `tool_use` block's `input` for arguments (the inverse of `arguments_of`):
    arguments that were not an object are sent back as the object `{}`, the
    closest valid input (the API refuses anything else)."""
    if len(arguments) == 1 and INVALID_ARGUMENTS in arguments:
        return {}
    return dict(arguments)
