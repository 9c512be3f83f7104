"""Plain JSON values: how the codec checks them, writes them canonically, and
names the place of a fault (`request.context[1].output.usage`)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import NoReturn, TypeAlias, cast

import msgspec

CODEC_VERSION: int = 1
"""The version of the encoded shapes; stored by containers beside the data."""

JSON: TypeAlias = bool | int | float | str | list["JSON"] | dict[str, "JSON"] | None
"""Plain JSON data, as `json.loads` returns it."""

Path: TypeAlias = "str | tuple[Path, str | int]"
"""Where a value sits: a chain of (parent, key) pairs, rendered as text only
when a message needs it."""

MAX_DEPTH = 256
"""How deeply JSON-like values may nest (deeper, or cyclic, values are refused)."""

MAX_INT_BITS = 13_000
"""About 3,900 digits: larger integers are refused, as `json.dumps` and `json.loads`
refuse integers past 4,300 digits (Python's default conversion limit)."""

_SORTED = msgspec.json.Encoder(order="sorted")


class CodecError(ValueError):
    """Data that does not decode, or a value that does not encode; the message says where."""


def canonical(data: JSON) -> bytes:
    """`data` as compact UTF-8 JSON with sorted keys: equal data, equal bytes
    (keys to match by and to hash). What it cannot write (a lone surrogate,
    an integer of thousands of digits, an object that is not JSON) raises
    `CodecError`; NaN and infinities, which the codec never produces, would
    be written as null."""
    try:
        return _SORTED.encode(data)
    except UnicodeEncodeError as error:
        raise CodecError(f"a string UTF-8 cannot hold: {error.reason}") from error
    except (ValueError, TypeError) as error:
        raise CodecError(f"not JSON that can be written: {error}") from error


def pretty(data: JSON) -> str:
    """`data` as JSON text with sorted keys, indented by two spaces: files
    that are the same bytes for the same data and diff line by line."""
    return msgspec.json.format(canonical(data), indent=2).decode("utf-8")


def json_value(value: object, what: str) -> JSON:
    """`value` (tool arguments, a schema, `extra`) as the codec writes it;
    `CodecError`, naming `what`, for what JSON cannot hold: NaN, infinities,
    integers of thousands of digits, other objects, absurd nesting."""
    try:
        return to_json(value, what)
    except RecursionError as error:
        raise too_deep(what) from error


# --- errors and paths -----------------------------------------------------------


def error_at(path: Path, problem: str) -> CodecError:
    """The refusal of what sits at `path`, saying where: `request.tools[0]: ...`."""
    return CodecError(f"{render(path)}: {problem}")


def too_deep(what: str) -> CodecError:
    """Running out of stack (data nested absurdly deep) as a `CodecError`."""
    return CodecError(f"{what}: nested too deeply")


def kind_of(data: object) -> str:
    """What `data` is, for messages (never its value: it may be huge)."""
    if data is None:
        return "null"
    if isinstance(data, bool):
        return "a boolean"
    if isinstance(data, int):
        return "an integer"
    if isinstance(data, float):
        return "a number"
    if isinstance(data, str):
        return "a string"
    if isinstance(data, list | tuple):
        return "a list"
    if isinstance(data, dict):
        return "an object"
    return type_name(type(data))


def show(key: object) -> str:
    if isinstance(key, str):
        return repr(key if len(key) <= 40 else key[:40] + "...")
    return kind_of(key)


def render(path: Path) -> str:
    """`path` as text: `request.context[1].output.usage`."""
    steps: list[str | int] = []
    while isinstance(path, tuple):
        path, step = path
        steps.append(step)
    text = path
    for step in reversed(steps):
        if isinstance(step, int):
            text = f"{text}[{step}]"
        elif step.isidentifier():
            text = f"{text}.{step}"
        else:
            text = f"{text}[{show(step)}]"
    return text


def type_name(kind: type[object]) -> str:
    """`module.Qualname` (builtins without their module)."""
    module = getattr(kind, "__module__", None)
    name = str(getattr(kind, "__qualname__", None) or getattr(kind, "__name__", "?"))
    return name if module in (None, "builtins") else f"{module}.{name}"


# --- JSON values ------------------------------------------------------------------


def to_json(value: object, path: Path, depth: int = 0) -> JSON:
    """`value` as fresh plain JSON: any mapping becomes a dict, a tuple a list,
    subclasses of str, int, float and bool their base type."""
    if value is None:
        return None
    if isinstance(value, bool):
        return value is True
    if isinstance(value, int):
        return checked_int(value, path)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise error_at(path, f"{value!r} is not JSON (NaN and infinities are refused)")
        return float.__float__(value)
    if isinstance(value, str):
        return str.__str__(value)
    if depth >= MAX_DEPTH:
        raise error_at(path, f"nested deeper than {MAX_DEPTH} levels (or cyclic)")
    if isinstance(value, Mapping):
        return _json_mapping(cast("Mapping[object, object]", value), path, depth)
    if isinstance(value, list | tuple):
        items = cast("Sequence[object]", value)
        return [to_json(item, (path, index), depth + 1) for index, item in enumerate(items)]
    raise error_at(path, f"{kind_of(value)} is not JSON")


def _json_mapping(value: Mapping[object, object], path: Path, depth: int = 0) -> dict[str, JSON]:
    result: dict[str, JSON] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise error_at(path, f"keys must be strings, not {kind_of(key)}")
        result[str.__str__(key)] = to_json(item, (path, key), depth + 1)
    return result


def json_object(data: object, path: Path) -> dict[str, JSON]:
    if not isinstance(data, Mapping):
        raise error_at(path, f"expected an object, got {kind_of(data)}")
    return _json_mapping(cast("Mapping[object, object]", data), path)


def is_plain(value: object, depth: int = 0) -> bool:
    """Whether `value` is JSON of exactly the builtin types, so it decodes to an equal value."""
    kind = type(value)
    if value is None or kind is bool or kind is int or kind is str:
        return True
    if isinstance(value, float):
        return kind is float and math.isfinite(value)
    if depth >= MAX_DEPTH:
        return False
    if isinstance(value, list):
        items = cast("list[object]", value)
        return kind is list and all(is_plain(item, depth + 1) for item in items)
    if isinstance(value, dict):
        mapping = cast("dict[object, object]", value)
        return kind is dict and all(
            type(key) is str and is_plain(item, depth + 1) for key, item in mapping.items()
        )
    return False


def parsed(text: str) -> object:
    """The JSON value `text` holds, or `text` itself if it holds none."""
    try:
        return json.loads(text, parse_float=_finite, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        return text


def _finite(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise ValueError("not a finite number")
    return number


def _no_constant(literal: str) -> NoReturn:
    raise ValueError(f"{literal} is not JSON")


# --- checked scalars and containers -------------------------------------------------


def string(data: object, path: Path) -> str:
    if not isinstance(data, str):
        raise error_at(path, f"expected a string, got {kind_of(data)}")
    return str.__str__(data)


def optional_string(data: object, path: Path) -> str | None:
    return None if data is None else string(data, path)


def integer(data: object, path: Path) -> int:
    if isinstance(data, bool) or not isinstance(data, int):
        raise error_at(path, f"expected an integer, got {kind_of(data)}")
    return checked_int(data, path)


def checked_int(value: int, path: Path) -> int:
    if value.bit_length() > MAX_INT_BITS:
        raise error_at(path, f"integer too large for JSON ({value.bit_length()} bits)")
    return int.__int__(value)


def boolean(data: object, path: Path) -> bool:
    if not isinstance(data, bool):
        raise error_at(path, f"expected a boolean, got {kind_of(data)}")
    return data is True


def optional_number(data: object, path: Path) -> float | None:
    if data is None:
        return None
    if isinstance(data, bool) or not isinstance(data, int | float):
        raise error_at(path, f"expected a number or null, got {kind_of(data)}")
    try:
        number = float(data)
    except OverflowError as error:
        raise error_at(path, "number too large") from error
    if not math.isfinite(number):
        raise error_at(path, "NaN and infinities are refused")
    return number


def json_list(data: object, path: Path) -> list[object]:
    if not isinstance(data, list):
        raise error_at(path, f"expected a list, got {kind_of(data)}")
    return cast("list[object]", data)


def items(value: object, path: Path, what: str) -> tuple[object, ...] | list[object]:
    """`value` if it is a tuple or list (of `what`, checked one by one by the caller)."""
    if not isinstance(value, tuple | list):
        raise error_at(path, f"expected a tuple of {what}, got {kind_of(value)}")
    return cast("tuple[object, ...] | list[object]", value)


def fields(
    data: object, path: Path, required: tuple[str, ...], optional: tuple[str, ...] = ()
) -> dict[str, object]:
    """`data` as an object with all `required` keys and no keys but those and `optional`."""
    if not isinstance(data, dict):
        raise error_at(path, f"expected an object, got {kind_of(data)}")
    found = cast("dict[str, object]", data)  # its keys are checked to be of these strings next
    for key in found:
        if key not in optional and key not in required:
            known = ", ".join((*required, *optional))
            raise error_at(path, f"unexpected key {show(key)} (expected {known})")
    for key in required:
        if key not in found:
            raise error_at(path, f"missing key {key!r}")
    return found


def tagged(data: object, path: Path, tags: tuple[str, ...]) -> tuple[str, object]:
    """The one key of `data` (one of `tags`) and its value."""
    expected = f"expected an object with one key, one of {', '.join(tags)}"
    if not isinstance(data, dict):
        raise error_at(path, f"{expected}; got {kind_of(data)}")
    found = cast("dict[object, object]", data)
    if len(found) != 1:
        raise error_at(path, f"{expected}; got {kind_of(found)}")
    ((tag, body),) = found.items()
    if not isinstance(tag, str) or tag not in tags:
        raise error_at(path, f"unexpected key {show(tag)} (expected one of {', '.join(tags)})")
    return tag, body
