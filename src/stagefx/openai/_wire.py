"""Pieces both OpenAI wire formats share: content text, images, schemas, JSON access.

The provider's codecs (`_chat`, `_responses`) and the fake server's
(`stagefx.testing._openai_codec`) both build on these.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Mapping
from typing import TypeGuard, cast

from stagefx._core.content import (
    ImageContent,
)
from stagefx._core.request import OutputSpec
from stagefx._env.env import ctx

JSON = dict[str, object]


def image_url(image: ImageContent) -> str:
    """An image as OpenAI takes it: its URL, or its bytes as a data URL."""
    if image.url is not None:
        return image.url
    assert image.data is not None  # ImageContent holds exactly one of the two
    return f"data:{image.mime_type};base64,{base64.b64encode(image.data).decode()}"


class _NotStrict(Exception):
    """Why a schema cannot be made strict."""


def strict_form(schema: Mapping[str, object]) -> tuple[dict[str, object], str | None]:
    """`schema` as OpenAI's strict mode takes it, and None; or `schema` as it
    is, and why it cannot be strict (the request then says strict: false).

    Made strict, losslessly for what stagefx validates: an object with no
    `additionalProperties` is closed (our validation ignores extra fields
    anyway), and an optional property with a default becomes required with its
    default dropped (the model then states the value). An optional property
    without a default, or an open mapping (`additionalProperties` a schema or
    true), cannot be strict.
    """
    try:
        made = _strict(schema, "$")
    except _NotStrict as why:
        return dict(schema), str(why)
    # `made` is made from `schema`: its keys are str.
    return cast("dict[str, object]", made) if isinstance(made, dict) else dict(schema), None


_SCHEMA_MAPS = ("properties", "$defs", "definitions")
_SCHEMA_ONE = ("items", "not", "contains")
_SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")


def _strict(schema: object, where: str) -> object:
    if not isinstance(schema, Mapping):
        return schema
    # Keys and values of any type: a caller's schema is not checked before this.
    made = dict(cast("Mapping[object, object]", schema))
    for key in _SCHEMA_MAPS:
        inner = made.get(key)
        if isinstance(inner, Mapping):
            made[key] = {
                name: _strict(value, f"{where}.{name}")
                for name, value in cast("Mapping[object, object]", inner).items()
            }
    for key in _SCHEMA_ONE:
        if isinstance(made.get(key), Mapping):
            made[key] = _strict(made[key], f"{where}.{key}")
    for key in _SCHEMA_LISTS:
        inner = made.get(key)
        if isinstance(inner, list):
            made[key] = [_strict(value, f"{where}.{key}") for value in cast("list[object]", inner)]
    if made.get("type") != "object" and "properties" not in made:
        return made
    extra = made.get("additionalProperties")
    if extra is not None and extra is not False:
        raise _NotStrict(f"{where} is a mapping of arbitrary keys")
    found = made.get("properties", {})
    required = made.get("required", [])
    if not isinstance(found, dict) or not isinstance(required, list):
        raise _NotStrict(f"{where} is not a plain object schema")
    properties = cast("dict[object, object]", found)
    for name, value in list(properties.items()):
        if name in required:
            continue
        if isinstance(value, dict) and "default" in value:
            properties[name] = {
                key: item
                for key, item in cast("dict[object, object]", value).items()
                if key != "default"
            }
            continue
        raise _NotStrict(f"{where}.{name} is optional and has no default")
    made["properties"] = properties
    made["required"] = list(properties)
    made["additionalProperties"] = False
    return made


def strictly(key: str, schema: Mapping[str, object]) -> dict[str, object]:
    """`{key: schema, "strict": ...}` for a request: strict wherever the schema
    can be made so; otherwise as given, with the reason in a debug log line."""
    made, why = strict_form(schema)
    if why is not None:
        ctx.log_debug("schema sent with strict: false", reason=why)
    return {key: made, "strict": why is None}


def schema_name(output: OutputSpec) -> str:
    """A name OpenAI accepts for a response format (letters, digits, _ and -)."""
    name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in output.name or "output")
    return name[:64] or "output"


INVALID_ARGUMENTS = "(arguments are not a JSON object)"
"""The one key of the arguments a `ModelToolRequest` gets when the model's
arguments text is not a JSON object (invalid JSON, another JSON value, nesting
deeper than `MAX_ARGUMENT_DEPTH`, an integer past Python's digit limit); its
value is the text as the model sent it. It can never name a parameter, so the
tool's validation refuses it and the model gets an error answer it can correct:
`invalid arguments for add: (arguments are not a JSON object): Extra inputs are
not permitted; a: Field required`. Sent back to the model, such arguments are
the original text again (`arguments_text`)."""

MAX_ARGUMENT_DEPTH = 64
"""How deeply tool-call arguments may nest before they count as not an object."""


def _str_keyed(value: object) -> TypeGuard[Mapping[str, object]]:
    """Whether `value` is a mapping whose keys are all str."""
    return isinstance(value, Mapping) and all(
        isinstance(key, str) for key in cast("Mapping[object, object]", value)
    )


def arguments_of(raw: object) -> dict[str, object]:
    """Tool-call arguments from their JSON text (an object as is; empty text or
    null as no arguments). Anything else comes back as `{INVALID_ARGUMENTS: text}`,
    so validation tells the model what is wrong instead of the call failing."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    if _str_keyed(raw):
        parsed: object = dict(raw)
    elif isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except (ValueError, RecursionError):  # bad JSON, too deep, too many digits
            return {INVALID_ARGUMENTS: raw}
    else:
        return {INVALID_ARGUMENTS: f"<{type(raw).__name__}>"}
    if isinstance(parsed, dict):
        arguments = cast("dict[str, object]", parsed)  # str keys: JSON's, or checked above
        if _shallow(arguments, MAX_ARGUMENT_DEPTH):
            return arguments
    return {INVALID_ARGUMENTS: raw if isinstance(raw, str) else "<nested too deeply>"}


def arguments_text(arguments: Mapping[str, object]) -> str:
    """The JSON text of tool-call arguments, the inverse of `arguments_of`: the
    model's original text for arguments that were not a JSON object."""
    if len(arguments) == 1:
        original = arguments.get(INVALID_ARGUMENTS)
        if isinstance(original, str):
            return original
    return json.dumps(dict(arguments))


def _shallow(value: object, limit: int) -> bool:
    """Whether JSON data nests at most `limit` containers deep (no recursion)."""
    pending: list[tuple[object, int]] = [(value, 1)]
    while pending:
        current, depth = pending.pop()
        if isinstance(current, dict | list):
            if depth > limit:
                return False
            children = cast(
                "Iterable[object]", current.values() if isinstance(current, dict) else current
            )
            pending.extend((child, depth + 1) for child in children)
    return True
