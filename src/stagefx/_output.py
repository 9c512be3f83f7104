"""`output=`: what shape of answer a completion asks for, and how its text is parsed."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Literal, TypeAlias

import yaml

from stagefx._model import OutputSpec
from stagefx._schema import SchemaError, Shape, ValidationFailure

__all__ = ["OutputSelection", "Parser", "output_of"]

OutputSelection: TypeAlias = Literal["auto", "text", "json", "yaml"] | type[object]
"""`output=`: free text, any JSON / YAML value, or a type to validate against."""

Parser: TypeAlias = Callable[[str], object]
"""Parses a model's text into a value; raises `ValidationFailure` when it cannot."""


def output_of(
    selection: OutputSelection,
) -> tuple[OutputSpec, Parser | None]:
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
