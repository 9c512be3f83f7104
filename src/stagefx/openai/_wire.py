"""Pieces both OpenAI wire formats share: content text, images, schemas, JSON access.

The provider's codecs (`_chat`, `_responses`) and the fake server's
(`stagefx.testing._openai_codec`) both build on these.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping

from stagefx._content import (
    ArtifactContent,
    ImageContent,
    MultimodalContent,
    ResourceContent,
    TextContent,
)
from stagefx._model import OutputSpec

JSON = dict[str, object]


def image_url(image: ImageContent) -> str:
    """An image as OpenAI takes it: its URL, or its bytes as a data URL."""
    if image.url is not None:
        return image.url
    assert image.data is not None  # ImageContent holds exactly one of the two
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode()}"


def part_text(part: TextContent | ArtifactContent | ResourceContent) -> str:
    if isinstance(part, ResourceContent):
        return f"[resource {part.uri}]"
    return part.text


def plain_text(content: MultimodalContent) -> str:
    """Text of the content, images left out (for places that only take text)."""
    return "".join(part_text(part) for part in content.parts if not isinstance(part, ImageContent))


def is_strict_schema(schema: object) -> bool:
    """Whether OpenAI's strict mode accepts `schema`: every object closed and
    every property required (strict is used only then)."""
    if isinstance(schema, Mapping):
        if schema.get("type") == "object":
            properties = schema.get("properties", {})
            required = schema.get("required", [])
            if schema.get("additionalProperties") is not False:
                return False
            if not isinstance(properties, Mapping) or not isinstance(required, list):
                return False
            if set(properties) != set(required):
                return False
        return all(is_strict_schema(value) for value in schema.values())
    if isinstance(schema, list):
        return all(is_strict_schema(value) for value in schema)
    return True


def schema_name(output: OutputSpec) -> str:
    """A name OpenAI accepts for a response format (letters, digits, _ and -)."""
    name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in output.name or "output")
    return name[:64] or "output"


def arguments_of(raw: object) -> dict[str, object]:
    """Tool-call arguments from their JSON text; text that is not a JSON object
    is passed on under "arguments", so validation tells the model what is wrong."""
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except json.JSONDecodeError:
            return {"arguments": raw}
        if isinstance(parsed, dict):
            return parsed
    return {"arguments": raw}


def mapping(value: object, where: str) -> Mapping[str, object]:
    """`value` as a JSON object, or a `MalformedBody` naming where it was expected."""
    if not isinstance(value, Mapping):
        raise MalformedBody(f"expected an object at {where}, got {type(value).__name__}")
    return value


def items(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise MalformedBody(f"expected a list at {where}, got {type(value).__name__}")
    return value


def number(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise MalformedBody(f"expected text at {where}, got {type(value).__name__}")
    return value


class MalformedBody(ValueError):
    """A body that is JSON but not the shape the API promises."""
