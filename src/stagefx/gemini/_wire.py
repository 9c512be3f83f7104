"""Pieces the provider's codec and the fake server's share: JSON access,
content text, images, a function call's `ModelToolRequest.identifier`,
thought signatures kept in an answer's `provider_data`, and a model turn's
parts."""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Mapping
from typing import Final, cast

from stagefx._core.content import (
    ImageContent,
)
from stagefx._core.conversation import ModelOutput, ModelToolRequest
from stagefx._model.body import mapping, text

__all__ = [
    "JSON",
    "PROVIDER",
    "call_identifier",
    "function_call",
    "image_part",
    "model_parts",
    "sent_identifier",
    "signature_data",
    "signatures",
]

JSON = dict[str, object]

GENERATED: Final = "gemini-call-"
"""The start of an identifier made for a call Gemini gave no `id` (its
position in the answer follows): such ids are never sent back."""

PROVIDER: Final = "gemini"
"""The key of this provider's entry in a `ModelOutput.provider_data`: the
thought signatures (Gemini 2.5+ and 3) its answer's parts carried, to be
sent back on those parts. `{"gemini": {"signatures": {identifier: signature},
"text_signature": signature}}`: a function call's keyed by its
`ModelToolRequest.identifier`, a text part's (the answer's text goes back as
one part) on its own; either left out when there is none. It is plain JSON,
so cassettes and durable steps keep it."""


def call_identifier(given: str | None, index: int) -> str:
    """The `ModelToolRequest.identifier` of the `index`-th call of an answer:
    Gemini's `id`, else one made from `index` (see `GENERATED`)."""
    return given if given else f"{GENERATED}{index}"


def sent_identifier(identifier: str) -> str | None:
    """The `id` to send back for a call's identifier: None for one we made."""
    return None if identifier.startswith(GENERATED) or not identifier else identifier


def signature_data(calls: Mapping[str, str], text_signature: str | None) -> JSON:
    """The `provider_data` that keeps the calls' and the text's thought
    signatures (see `PROVIDER`); empty when there are none."""
    kept: JSON = {}
    if calls:
        kept["signatures"] = dict(calls)
    if text_signature is not None:
        kept["text_signature"] = text_signature
    return {PROVIDER: kept} if kept else {}


def signatures(provider_data: Mapping[str, object]) -> tuple[dict[str, str], str | None]:
    """The calls' thought signatures (by identifier) and the text's (None if
    none) that `provider_data` keeps (see `PROVIDER`); anything else in it
    (another provider's data, say) is left out."""
    kept = provider_data.get(PROVIDER)
    if not isinstance(kept, Mapping):
        return {}, None
    fields = cast("Mapping[str, object]", kept)
    found = fields.get("signatures")
    calls: dict[str, str] = {}
    if isinstance(found, Mapping):
        calls = {
            key: value
            for key, value in cast("Mapping[object, object]", found).items()
            if isinstance(key, str) and isinstance(value, str)
        }
    said = fields.get("text_signature")
    return calls, said if isinstance(said, str) else None


def function_call(part: Mapping[str, object], index: int) -> ModelToolRequest:
    """The call a `functionCall` part asks for, the `index`-th of its turn."""
    function = mapping(part.get("functionCall"), "functionCall")
    given = function.get("id")
    return ModelToolRequest(
        call_identifier(given if isinstance(given, str) else None, index),
        text(function.get("name"), "functionCall.name"),
        dict(mapping(function.get("args") or {}, "functionCall.args")),
    )


def model_parts(turn: ModelOutput, said: str) -> list[JSON]:
    """A model turn's parts, its text `said` first (if any), then its calls,
    each with the thought signature its `provider_data` keeps for it: as
    Gemini answers, and as it takes them back."""
    signed, text_signature = signatures(turn.provider_data)
    parts: list[JSON] = []
    if said or text_signature is not None:
        part: JSON = {"text": said}
        if text_signature is not None:
            part["thoughtSignature"] = text_signature
        parts.append(part)
    for call in turn.tool_requests:
        given = sent_identifier(call.identifier)
        function: JSON = {"name": call.tool, "args": dict(call.arguments)}
        if given is not None:
            function["id"] = given
        part = {"functionCall": function}
        if call.identifier in signed:
            part["thoughtSignature"] = signed[call.identifier]
        parts.append(part)
    return parts


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
