"""JSON Schema and validation for Python types, through pydantic.

Tools (their parameters) and structured outputs (their type) both need a
schema to show the model and a validator for what the model sends back.
pydantic covers dataclasses, TypedDicts, pydantic models and plain types;
attrs classes are mapped field by field.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, cast, final, get_type_hints

import attrs
import pydantic

__all__ = ["Shape", "SchemaError", "ValidationFailure", "parameters_shape"]

T = TypeVar("T")


class SchemaError(TypeError):
    """A type has no JSON Schema (raised when a tool or output is built)."""


class ValidationFailure(ValueError):
    """A value does not match its shape; the message lists what is wrong."""


@final
class Shape(Generic[T]):
    """A type's JSON Schema and a validator that turns JSON-like data into a `T`."""

    def __init__(
        self, schema: Mapping[str, object], validate: Callable[[object], T], name: str
    ) -> None:
        self.schema = schema
        self.name = name
        self._validate = validate

    @classmethod
    def of(cls, kind: type[T]) -> Shape[T]:
        is_attrs_class = attrs.has(kind)  # a bool, so `kind` keeps its type T
        if is_attrs_class:
            return _attrs_shape(kind)
        try:
            adapter = pydantic.TypeAdapter(kind)
            schema = adapter.json_schema()
        except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as error:
            raise SchemaError(f"{_name(kind)} has no JSON Schema: {error}") from error

        def validate(value: object) -> T:
            try:
                return adapter.validate_python(value)
            except pydantic.ValidationError as error:
                raise ValidationFailure(_describe(error)) from error

        return cls(schema, validate, _name(kind))

    def validate(self, value: object) -> T:
        """`value` as a `T`, or `ValidationFailure` saying what does not fit."""
        return self._validate(value)


def _attrs_shape(kind: type[T]) -> Shape[T]:
    hints = get_type_hints(kind)
    fields: dict[str, object] = {}
    for field in attrs.fields(cast("type[attrs.AttrsInstance]", kind)):
        default: object = field.default
        factory = getattr(default, "factory", None)
        if default is attrs.NOTHING:
            default = ...
        elif callable(factory) and not getattr(default, "takes_self", False):
            default = pydantic.Field(default_factory=factory)
        fields[field.alias or field.name] = (hints.get(field.name, object), default)
    model = _model(_name(kind), fields)

    def validate(value: object) -> T:
        try:
            checked = model.model_validate(value)
        except pydantic.ValidationError as error:
            raise ValidationFailure(_describe(error)) from error
        return kind(**{name: getattr(checked, name) for name in fields})

    return Shape(model.model_json_schema(), validate, _name(kind))


def parameters_shape(
    function: Callable[..., object], name: str, *, context: type | None = None
) -> tuple[Shape[dict[str, object]], bool]:
    """The shape of a function's keyword arguments, from its signature, and
    whether its first parameter is annotated `context` (that parameter is not
    the model's to fill: it is left out of the shape)."""
    try:
        hints = get_type_hints(function)
    except NameError as error:
        raise SchemaError(
            f"tool {name!r}: cannot resolve a parameter annotation ({error}); "
            "define the types it uses at module level"
        ) from error
    parameters = list(inspect.signature(function).parameters.values())
    takes_context = (
        context is not None
        and bool(parameters)
        and hints.get(parameters[0].name) is context
        and parameters[0].kind
        in (parameters[0].POSITIONAL_ONLY, parameters[0].POSITIONAL_OR_KEYWORD)
    )
    if takes_context:
        parameters = parameters[1:]
    fields: dict[str, object] = {}
    for parameter in parameters:
        if context is not None and hints.get(parameter.name) is context:
            raise SchemaError(f"tool {name!r}: a {_name(context)} parameter must be the first one")
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise SchemaError(f"tool {name!r}: *args and **kwargs cannot be described to a model")
        if parameter.name not in hints:
            raise SchemaError(
                f"tool {name!r}: parameter {parameter.name!r} needs a type annotation"
            )
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (hints[parameter.name], default)
    model = _model(name, fields)

    def validate(value: object) -> dict[str, object]:
        try:
            checked = model.model_validate(value)
        except pydantic.ValidationError as error:
            raise ValidationFailure(_describe(error)) from error
        return {key: getattr(checked, key) for key in fields}

    schema = dict(model.model_json_schema())
    schema.pop("title", None)
    return Shape(schema, validate, name), takes_context


def _model(name: str, fields: Mapping[str, Any]) -> type[pydantic.BaseModel]:
    # `Any`, as pydantic types a field definition: a `(type, default)` pair built at run time.
    try:
        model: type[pydantic.BaseModel] = pydantic.create_model(
            name, __config__=pydantic.ConfigDict(extra="forbid"), **fields
        )
        model.model_json_schema()
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as error:
        raise SchemaError(f"{name}: a parameter type has no JSON Schema: {error}") from error
    return model


def _describe(error: pydantic.ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in item['loc']) or 'value'}: {item['msg']}"
        for item in error.errors()
    ]
    return "; ".join(problems)


def _name(kind: object) -> str:
    return getattr(kind, "__name__", None) or repr(kind)
