"""A small deterministic model that behaves plausibly, for demos and examples.

`demo_answer(request)` calls the first offered tool once (arguments made from
its schema), answers routing prompts with a route name, gives JSON/YAML or
schema-shaped output when asked, and otherwise analyses or summarises the
document it was given. Use it as `FunctionModel(demo_answer)` or as the
callback of `FakeOpenAIServer`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import cast

from stagefx._core.conversation import ModelContext, ModelInput, ModelOutput, ModelToolRequest
from stagefx._core.request import ModelRequest, ToolSpec

__all__ = ["demo_answer"]

_ROUTE = re.compile(r"^- ([^:\n]+):", re.M)


def demo_answer(request: ModelRequest) -> ModelOutput:
    """The demo model's deterministic answer to `request`."""
    if "Answer with the route's name only" in request.instructions:
        routes = _ROUTE.findall(request.instructions)
        return ModelOutput.of(routes[0] if routes else "")
    asked = _last_input(request.context)
    if request.tools and not _tools_answered(request.context):
        return ModelOutput(tool_requests=(_call(request.tools[0], asked),))
    if request.output.mode == "schema" and request.output.schema is not None:
        schema = request.output.schema
        return ModelOutput.of(json.dumps(_example(schema, schema, asked)))
    if request.output.mode == "json":
        return ModelOutput.of(json.dumps(_items(asked)))
    if request.output.mode == "yaml":
        return ModelOutput.of("".join(f"- {item}\n" for item in _items(asked)))
    return ModelOutput.of(_prose(request, asked))


def _last_input(context: ModelContext) -> str:
    for turn in reversed(context):
        if isinstance(turn, ModelInput) and not turn.content.is_empty:
            return turn.content.as_string()
    return ""


def _tools_answered(context: ModelContext) -> bool:
    """Whether tools already answered since the last plain input."""
    for turn in reversed(context):
        if isinstance(turn, ModelInput):
            if turn.tool_responses:
                return True
            if not turn.content.is_empty:
                return False
    return False


def _document(context: ModelContext) -> str:
    """The longest user input so far: the document under discussion."""
    texts = [
        turn.content.as_string()
        for turn in context
        if isinstance(turn, ModelInput) and not turn.content.is_empty
    ]
    return max(texts, key=len, default="")


def _call(spec: ToolSpec, asked: str) -> ModelToolRequest:
    schema = spec.parameters
    arguments = _example(schema, schema, asked)
    return ModelToolRequest(
        f"call_{spec.name}",
        spec.name,
        cast("dict[str, object]", arguments) if isinstance(arguments, dict) else {},
    )


def _example(schema: Mapping[str, object], root: Mapping[str, object], text: str) -> object:
    """A value matching a (pydantic-made) JSON Schema, drawn from `text` where it can.
    (The schema's objects are JSON objects: their keys are str.)"""
    reference = schema.get("$ref")
    if isinstance(reference, str):
        definitions = root.get("$defs")
        if isinstance(definitions, Mapping):
            target = cast("Mapping[str, object]", definitions).get(reference.rsplit("/", 1)[-1])
            if isinstance(target, Mapping):
                return _example(cast("Mapping[str, object]", target), root, text)
    numbers = [int(found) for found in re.findall(r"-?\d+", text)] or [1]
    match schema.get("type"):
        case "object":
            properties = schema.get("properties")
            if not isinstance(properties, Mapping):
                return {}
            example: dict[str, object] = {}
            numeric = 0
            fields = cast("Mapping[str, object]", properties)
            for index, (name, value) in enumerate(fields.items()):
                if not isinstance(value, Mapping):
                    continue
                inner = cast("Mapping[str, object]", value)
                if inner.get("type") in ("integer", "number"):
                    # successive numbers of the text go to successive numeric fields
                    picked = str(numbers[numeric % len(numbers)])
                    example[name] = _example(inner, root, picked)
                    numeric += 1
                else:
                    example[name] = _example(inner, root, text if index == 0 else name)
            return example
        case "array":
            items = schema.get("items")
            each: Mapping[str, object] = (
                cast("Mapping[str, object]", items) if isinstance(items, Mapping) else {}
            )
            return [_example(each, root, item) for item in _items(text)]
        case "integer":
            return numbers[0]
        case "number":
            return float(numbers[0])
        case "boolean":
            return True
        case _:
            return text


def _items(text: str) -> list[str]:
    words = re.findall(r"[A-Za-z][\w+#-]*", text)
    return (words or ["item"])[:3]


def _sentences(text: str) -> list[str]:
    return [part.strip() for part in re.split(r"(?<=[.!?])\s+", text) if part.strip()]


def _prose(request: ModelRequest, asked: str) -> str:
    document = _document(request.context)
    wanted = f"{request.instructions} {asked}".lower()
    words = document.split()
    if "summar" in wanted:
        first = _sentences(document)[:1] or ["(empty document)"]
        short = " ".join(first[0].split()[:25])
        return f"Summary: {short}"
    if "analy" in wanted:
        sentences = _sentences(document)
        paragraphs = [part for part in document.split("\n\n") if part.strip()]
        longest = max(words, key=len, default="")
        return (
            f"Analysis: the document has {len(words)} words in {len(sentences)} sentences "
            f"and {len(paragraphs)} paragraphs; its longest word is {longest!r}. "
            f"It opens with: {' '.join(words[:12])}"
        )
    tools_said = [
        response.content.as_string()
        for turn in request.context
        if isinstance(turn, ModelInput)
        for response in turn.tool_responses
    ]
    if tools_said:
        return f"The tools answered: {', '.join(tools_said)}. Done."
    return f"Done: {asked}"
