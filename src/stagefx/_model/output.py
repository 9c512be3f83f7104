"""`output=`: what shape of answer a completion asks for, and how its text is parsed.

Parsing is bounded: the text may be at most `MAX_OUTPUT_CHARS` long, values
nested at most `MAX_OUTPUT_DEPTH` deep, integers at most `MAX_INTEGER_DIGITS`
digits, and YAML may use at most `MAX_YAML_ALIASES` aliases and hold at most
`MAX_YAML_NODES` values, aliases expanded. Whatever goes wrong while parsing or
validating (a bound, a validator's own exception) is a `ValidationFailure`,
which the completion reports as an `OutputValidationError`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal, TypeAlias, cast

import yaml
import yaml.parser
import yaml.reader
import yaml.scanner
from yaml.composer import Composer
from yaml.constructor import SafeConstructor
from yaml.events import AliasEvent, Event, ScalarEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

from stagefx._core.errors import describe_error
from stagefx._core.request import OutputSpec
from stagefx._core.schema import SchemaError, Shape, ValidationFailure

__all__ = [
    "MAX_INTEGER_DIGITS",
    "MAX_OUTPUT_CHARS",
    "MAX_OUTPUT_DEPTH",
    "MAX_YAML_NODES",
    "MAX_YAML_ALIASES",
    "OutputSelection",
    "Parser",
    "output_of",
]

OutputSelection: TypeAlias = Literal["auto", "text", "json", "yaml"] | type[object]
"""`output=`: free text, any JSON / YAML value, or a type to validate against."""

Parser: TypeAlias = Callable[[str], object]
"""Parses a model's text into a value; raises `ValidationFailure` when it cannot."""

MAX_OUTPUT_CHARS = 1_000_000
"""The longest model output parsed as JSON, YAML or a type."""
MAX_OUTPUT_DEPTH = 100
"""How deeply parsed values may nest (lists and mappings)."""
MAX_YAML_NODES = 100_000
"""How many values a YAML document may hold, aliases expanded (PyYAML builds
about 100,000 values a second: this bounds the time a document takes)."""
MAX_INTEGER_DIGITS = 4_300
"""The most digits an integer in parsed output may have (CPython's default limit)."""
MAX_YAML_ALIASES = 100
"""How many aliases (`*name`) a YAML document may use."""


def output_of(
    selection: object,
) -> tuple[OutputSpec, Parser | None]:
    """The spec sent to the model and the parser for its text (None: keep text).
    Typed `object`: the `OutputSelection` a caller gave, unchecked until here."""
    if selection in ("auto", "text"):
        return OutputSpec(mode=selection), None
    if selection == "json":
        return OutputSpec(mode="json"), _parse_json
    if selection == "yaml":
        return OutputSpec(mode="yaml"), _parse_yaml
    if isinstance(selection, type):
        try:
            shape = Shape[object].of(cast("type[object]", selection))
        except SchemaError as error:
            raise TypeError(f"output={selection.__name__} cannot be described: {error}") from error

        def parse(text: str) -> object:
            value = _parse_json(text)
            try:
                return shape.validate(value)
            except ValidationFailure:
                raise
            except Exception as error:  # a validator's own ValueError, TypeError, ...
                raise ValidationFailure(
                    f"{shape.name} refused it: {describe_error(error)}"
                ) from error

        return OutputSpec(mode="schema", schema=shape.schema, name=shape.name), parse
    raise ValueError(f"output must be 'auto', 'text', 'json', 'yaml' or a type, got {selection!r}")


_INFO = re.compile(r"[\w-]*")
_BLANK = re.compile(r"\s*")


def _unfenced(text: str) -> str:
    """The inside of a Markdown code fence that is the whole text, else the text.

    The fence: optional whitespace, three backticks, an optional info word
    (letters, digits, `_`, `-`), whitespace ending in a newline, the inside,
    an optional newline, three backticks and optional whitespace. Linear in
    the text (the single expression it replaces backtracked quadratically on
    a fence followed by many newlines).
    """
    start = len(text) - len(text.lstrip())
    if not text.startswith("```", start):
        return text
    at = _INFO.match(text, start + 3).end()  # type: ignore[union-attr]  # `*` always matches
    blank_end = _BLANK.match(text, at).end()  # type: ignore[union-attr]  # `*` always matches
    newline = text.rfind("\n", at, blank_end)
    if newline < 0:
        return text
    inside_start = newline + 1
    end = len(text.rstrip())
    fence = end - 3
    if fence < inside_start or not text.startswith("```", fence):
        return text
    if fence > inside_start and text[fence - 1] == "\n":
        fence -= 1
    return text[inside_start:fence]


def _checked_size(text: str) -> str:
    if len(text) > MAX_OUTPUT_CHARS:
        raise ValidationFailure(
            f"output of {len(text):,} characters is longer than {MAX_OUTPUT_CHARS:,}"
        )
    return _unfenced(text)


def _bounded_int(digits: str) -> int:
    if len(digits.lstrip("-+")) > MAX_INTEGER_DIGITS:
        raise ValidationFailure(f"an integer has more than {MAX_INTEGER_DIGITS} digits")
    return int(digits)


def _parse_json(text: str) -> object:
    inside = _checked_size(text)
    try:
        value = json.loads(inside, parse_int=_bounded_int)
    except ValidationFailure:
        raise
    except json.JSONDecodeError as error:
        raise ValidationFailure(f"not JSON: {error}") from error
    except RecursionError as error:
        raise ValidationFailure(f"not JSON: nested more than {MAX_OUTPUT_DEPTH} deep") from error
    except Exception as error:
        raise ValidationFailure(f"not JSON: {describe_error(error)}") from error
    if inside.count("[") + inside.count("{") > MAX_OUTPUT_DEPTH:  # else it cannot be too deep
        _check_depth(value)
    return value


def _check_depth(value: object) -> None:
    """Refuse JSON values nested deeper than `MAX_OUTPUT_DEPTH`, level by level."""
    level: list[object] = [value] if type(value) is list or type(value) is dict else []
    depth = 0
    while level:
        depth += 1
        if depth > MAX_OUTPUT_DEPTH:
            raise ValidationFailure(f"not JSON: nested more than {MAX_OUTPUT_DEPTH} deep")
        below: list[object] = []
        for item in level:
            children = (
                cast("list[object]", item)
                if type(item) is list
                else cast("dict[object, object]", item).values()  # a dict: `level` holds no other
            )
            below += [child for child in children if type(child) is list or type(child) is dict]
        level = below


class _Bounded(Composer, SafeConstructor, Resolver):
    """PyYAML's safe composer and constructor, with bounds on depth, aliases,
    expansion and integer digits (a parser class comes with it)."""

    if TYPE_CHECKING:  # the parser's

        def check_event(self, *choices: type[Event]) -> bool: ...
        def peek_event(self) -> Event: ...
        def dispose(self) -> None: ...

    def bound(self) -> None:
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self.depth = 0
        self.aliases = 0
        self.composed = 0
        self.sizes: dict[int, int] = {}  # id of a composed node -> values it expands to

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            self.aliases += 1
            if self.aliases > MAX_YAML_ALIASES:
                raise ValidationFailure(f"not YAML: more than {MAX_YAML_ALIASES} aliases")
            anchor = getattr(self.peek_event(), "anchor", None)
            target = self.anchors.get(anchor)
            if target is not None and id(target) not in self.sizes:
                raise ValidationFailure(f"not YAML: alias *{anchor} is inside its own anchor")
            return super().compose_node(parent, index)
        self.composed += 1
        if self.composed > MAX_YAML_NODES:
            raise ValidationFailure(f"not YAML: more than {MAX_YAML_NODES:,} values")
        if self.check_event(ScalarEvent):
            node = super().compose_node(parent, index)
        else:  # a sequence or a mapping: one level deeper
            self.depth += 1
            if self.depth > MAX_OUTPUT_DEPTH:
                raise ValidationFailure(f"not YAML: nested more than {MAX_OUTPUT_DEPTH} deep")
            node = super().compose_node(parent, index)
            self.depth -= 1
        size = 1
        if isinstance(node, SequenceNode):
            size += sum(self.sizes[id(child)] for child in node.value)
        elif isinstance(node, MappingNode):
            size += sum(self.sizes[id(key)] + self.sizes[id(item)] for key, item in node.value)
        if size > MAX_YAML_NODES:
            raise ValidationFailure(f"not YAML: expands to more than {MAX_YAML_NODES:,} values")
        self.sizes[id(node)] = size
        return node

    def construct_yaml_int(self, node: ScalarNode) -> int:
        if len(str(node.value)) > MAX_INTEGER_DIGITS + 3:  # room for a sign and a base prefix
            raise ValidationFailure(f"an integer has more than {MAX_INTEGER_DIGITS} digits")
        return super().construct_yaml_int(node)


_Bounded.yaml_constructors = {
    **SafeConstructor.yaml_constructors,
    "tag:yaml.org,2002:int": _Bounded.construct_yaml_int,
}


class _PureLoader(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, _Bounded):
    def __init__(self, text: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        self.bound()


try:
    from yaml._yaml import CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _loader: Callable[[str], _Bounded] = _PureLoader
else:

    class _FastLoader(_Bounded, CParser):
        """libyaml parses; `_Bounded` (first, so its Python composer builds the
        nodes) composes and constructs."""

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            self.bound()

    _loader = _FastLoader


def _parse_yaml(text: str) -> object:
    inside = _checked_size(text)
    loader: _Bounded | None = None
    try:
        loader = _loader(inside)
        # safe: never constructs arbitrary objects (python/* tags are refused)
        return loader.get_single_data()
    except ValidationFailure:
        raise
    except yaml.YAMLError as error:
        raise ValidationFailure(f"not YAML: {error}") from error
    except RecursionError as error:
        raise ValidationFailure(f"not YAML: nested more than {MAX_OUTPUT_DEPTH} deep") from error
    except Exception as error:  # a bad date, an encoding error, ...
        raise ValidationFailure(f"not YAML: {describe_error(error)}") from error
    finally:
        if loader is not None:
            loader.dispose()
