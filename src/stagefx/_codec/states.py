"""Stage states: context, result, usage totals and the caller's own values."""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

from stagefx._codec.content import (
    decode_context,
    decode_parts,
    decode_usage,
    encode_context,
    encode_parts,
    encode_usage,
)
from stagefx._codec.user_types import Types, dumped, named_types, validated
from stagefx._codec.values import (
    JSON,
    Path,
    error_at,
    fields,
    json_list,
    kind_of,
    render,
    show,
    too_deep,
    type_name,
)
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals


def encode_state(state: StageState, *, types: Sequence[type[object]] = ()) -> dict[str, JSON]:
    """`state` as `{"context", "result", "usage", "values"}`.

    `"usage"` holds its `UsageTotals`; every other value must be of a type
    listed in `types` (exactly), and is stored as pydantic's JSON dump under
    the type's qualified name; any other value raises `CodecError`.
    """
    try:
        return _encode_state(state, named_types(types, "state"), "state")
    except RecursionError as error:
        raise too_deep("state") from error


def decode_state(data: JSON, *, types: Sequence[type[object]] = ()) -> StageState:
    """The state `data` encodes, its values rebuilt by pydantic as the `types`
    of the same names (no other code runs); `CodecError` for any other."""
    try:
        return _decode_state(data, named_types(types, "state"), "state")
    except RecursionError as error:
        raise too_deep("state") from error


def _encode_state(state: object, types: Types, path: Path) -> dict[str, JSON]:
    if not isinstance(state, StageState):
        raise error_at(path, f"expected a StageState, got {kind_of(state)}")
    usage: JSON = None
    values: dict[str, JSON] = {}
    for value in state.values:
        kind = type(value)
        if isinstance(value, UsageTotals):
            where: Path = (path, "usage")
            usage = [encode_usage(item, (where, index)) for index, item in enumerate(value.models)]
            continue
        name = type_name(kind)
        where = f"{render((path, 'values'))}[{show(name)}]"
        if types.get(name) is not kind:
            raise error_at(where, f"no codec for a value of type {name}: pass the type in types=")
        values[name] = dumped(value, where)
    return {
        "context": encode_context(state.context, (path, "context"), types),
        "result": encode_parts(state.result, (path, "result"), types),
        "usage": usage,
        "values": values,
    }


def _decode_state(data: object, types: Types, path: Path) -> StageState:
    found = fields(data, path, (), ("context", "result", "usage", "values"))
    values: list[object] = []
    usage = found.get("usage")
    if usage is not None:
        where: Path = (path, "usage")
        totals = tuple(
            decode_usage(item, (where, index)) for index, item in enumerate(json_list(usage, where))
        )
        values.append(UsageTotals(totals))
    stored = found.get("values", {})
    if not isinstance(stored, dict):
        raise error_at((path, "values"), f"expected an object, got {kind_of(stored)}")
    for name, dump in cast("dict[object, object]", stored).items():
        where = f"{render((path, 'values'))}[{show(name)}]"
        kind = types.get(name) if isinstance(name, str) else None
        if kind is None or kind is UsageTotals:
            problem = f"no codec for a value of type {show(name)}: pass the type in types="
            raise error_at(where, problem)
        values.append(validated(kind, dump, where))
    return StageState(
        context=decode_context(found.get("context", []), (path, "context"), types),
        result=decode_parts(found.get("result", []), (path, "result"), types),
        values=tuple(values),
    )
