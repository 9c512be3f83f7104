"""Pieces the provider's codec and the fake server's share: JSON access,
content text, images, and how a function call's id and thought signature
ride on a `ModelToolRequest.identifier`."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping
from typing import Final, cast

from stagefx._content import (
    ArtifactContent,
    ImageContent,
    MultimodalContent,
    ResourceContent,
    TextContent,
)

__all__ = [
    "JSON",
    "MalformedBody",
    "call_identifier",
    "image_part",
    "items",
    "mapping",
    "number",
    "part_text",
    "plain_text",
    "split_identifier",
    "text",
]

JSON = dict[str, object]

GENERATED: Final = "gemini-call-"
"""The start of an identifier made for a call Gemini gave no `id` (its
position in the answer follows): such ids are never sent back."""

SIGNED: Final = "~thoughtSignature~"
"""What separates a call's id from the thought signature that came with it."""


def call_identifier(given: str | None, index: int, signature: str | None) -> str:
    """The `ModelToolRequest.identifier` of the `index`-th call of an answer:
    Gemini's `id` (else one made from `index`), and the call's thought
    signature when it carried one, so that the signature travels with the
    conversation (cassettes and durable steps included) and is sent back."""
    base = given if given else f"{GENERATED}{index}"
    return f"{base}{SIGNED}{signature}" if signature else base


def split_identifier(identifier: str) -> tuple[str | None, str | None]:
    """The `id` to send back (None for one we made) and the thought signature
    (None if none) that `call_identifier` put in `identifier`."""
    base, _, signature = identifier.partition(SIGNED)
    return (None if base.startswith(GENERATED) or not base else base), (signature or None)


def part_text(part: TextContent | ArtifactContent | ResourceContent) -> str:
    if isinstance(part, ResourceContent):
        return f"[resource {part.uri}]"
    return part.text


def plain_text(content: MultimodalContent) -> str:
    """Text of the content, images left out (for places that only take text)."""
    return "".join(part_text(part) for part in content.parts if not isinstance(part, ImageContent))


def image_part(image: ImageContent) -> JSON:
    """An image as a Gemini part: its bytes inline (base64), or its URL as file data."""
    if image.data is not None:
        data = base64.b64encode(image.data).decode()
        return {"inlineData": {"mimeType": image.mime_type or "image/png", "data": data}}
    assert image.url is not None  # ImageContent holds exactly one of the two
    mime = image.mime_type or mimetypes.guess_type(image.url)[0]
    found: JSON = {"fileUri": image.url}
    if mime:
        found["mimeType"] = mime
    return {"fileData": found}


def mapping(value: object, where: str) -> Mapping[str, object]:
    """`value` as a JSON object, or a `MalformedBody` naming where it was expected."""
    if not isinstance(value, Mapping):
        raise MalformedBody(f"expected an object at {where}, got {type(value).__name__}")
    return cast("Mapping[str, object]", value)  # a JSON object: its keys are str


def items(value: object, where: str) -> list[object]:
    if not isinstance(value, list):
        raise MalformedBody(f"expected a list at {where}, got {type(value).__name__}")
    return cast("list[object]", value)


def text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise MalformedBody(f"expected text at {where}, got {type(value).__name__}")
    return value


MAX_TOKENS: Final = 10**15
"""Token counts above this (or below 0) are not counts: they read as 0."""


def number(value: object) -> int:
    """A token count from the body; anything that is not a plausible one is 0."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return 0


class MalformedBody(ValueError):
    """A body that is JSON but not the shape the API promises."""
