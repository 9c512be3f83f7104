"""Values of the caller's own types (in states, and typed artifacts), dumped
to JSON and rebuilt by pydantic; only the types the caller lists in `types=`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias, cast

import pydantic

from stagefx._codec.values import (
    JSON,
    CodecError,
    Path,
    error_at,
    kind_of,
    render,
    to_json,
    type_name,
)

Types: TypeAlias = Mapping[str, type[object]]
"""The user types a state's values and artifacts may be of, by qualified name."""

NO_TYPES: Types = {}


def named_types(types: Sequence[type[object]], path: Path) -> dict[str, type[object]]:
    named: dict[str, type[object]] = {}
    for kind in types:
        if not isinstance(cast(object, kind), type):  # the caller's list: checked here
            raise error_at(path, f"types= holds types, not {kind_of(kind)}")
        name = type_name(kind)
        if named.get(name, kind) is not kind:
            raise error_at(path, f"types= holds two types named {name}")
        named[name] = kind
    return named


def dumped(value: object, where: str) -> JSON:
    """A value of a caller's type as JSON, by pydantic."""
    kind = type(value)
    try:
        data = _adapter(kind, where).dump_python(value, mode="json")
    except CodecError:
        raise
    except Exception as error:  # a type's own serializers run here: any failure is theirs
        raise CodecError(f"{where}: pydantic cannot dump the {type_name(kind)}: {error}") from error
    return to_json(data, where)


def validated(kind: type[object], data: object, where: str) -> object:
    """A value of `kind` rebuilt from its dump, by pydantic."""
    try:
        value = _adapter(kind, where).validate_python(data)
    except CodecError:
        raise
    except Exception as error:  # validation runs the type's own code: any failure is bad data
        raise CodecError(f"{where}: not a valid {type_name(kind)}: {error}") from error
    if type(value) is not kind:
        gave = type_name(type(value))
        raise error_at(where, f"validation gave a {gave}, not a {type_name(kind)}")
    return value


_ADAPTERS: dict[type[object], pydantic.TypeAdapter[object]] = {}
"""Adapters of the listed types, kept: building one for a dataclass costs about
0.35 ms, a tenth of a durable step on SQLite, for every value of every step."""


def _adapter(kind: type[object], path: Path) -> pydantic.TypeAdapter[object]:
    adapter = _ADAPTERS.get(kind)
    if adapter is not None:
        return adapter
    try:
        adapter = pydantic.TypeAdapter(kind)
    except (pydantic.PydanticUserError, pydantic.PydanticUndefinedAnnotation, TypeError) as error:
        raise CodecError(
            f"{render(path)}: pydantic cannot handle {type_name(kind)} ({error}); "
            "make it a dataclass or a pydantic model"
        ) from error
    if len(_ADAPTERS) >= 128:
        _ADAPTERS.clear()
    _ADAPTERS[kind] = adapter
    return adapter
