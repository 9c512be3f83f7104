"""Where the read-only shared material lives, how to skip when it is absent,
and how the contract tests read an OpenAPI description as JSON Schema."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[3] / "shared"


def shared_file(relative: str) -> Path:
    """The path of a file in ../shared, or skip the calling test saying why."""
    path = SHARED / relative
    if not path.is_file():
        pytest.skip(f"contract file {path} is absent (it lives beside the repo, in ../shared)")
    return path


def with_discriminators_resolved(schema: object) -> object:
    """OpenAPI's `discriminator` picks the one branch of a `oneOf` that applies;
    plain JSON Schema ignores it and fails a body that several branches accept
    (a user message matches both EasyInputMessage and InputMessage). Where a
    discriminator is given, `anyOf` states the OpenAPI rule in JSON Schema."""
    if isinstance(schema, dict):
        resolved = {key: with_discriminators_resolved(value) for key, value in schema.items()}
        if "discriminator" in resolved and "oneOf" in resolved:
            resolved["anyOf"] = resolved.pop("oneOf")
        return resolved
    if isinstance(schema, list):
        return [with_discriminators_resolved(value) for value in schema]
    return schema
