"""A griffe extension: give attrs classes (and NamedTuples) their `__init__`, so
the API reference shows how to build them.

attrs writes `__init__` when the class is created; griffe reads the source,
where there is none, so `Env`, `StageState` and the other frozen classes
would show no constructor. This does for `@attrs.frozen` and friends what
griffe's built-in extension does for `@dataclass`: one parameter per
annotated field, in order, with its default (`attrs.field(default=...)` or
`factory=...`), leaving out `init=False` fields and `ClassVar`s.

Loaded by mkdocstrings (`extensions:` in mkdocs.yml); it changes only the
documentation, never the package.
"""

from __future__ import annotations

from typing import Any

import griffe

_DECORATORS = {
    "attrs.define",
    "attrs.frozen",
    "attrs.mutable",
    "attr.s",
    "attr.attrs",
    "attr.define",
    "attr.frozen",
    "attr.mutable",
}
_FIELDS = {"attrs.field", "attr.field", "attr.ib", "attr.attrib"}
_FACTORIES = {"attrs.Factory", "attr.Factory"}
_NAMED_TUPLES = {"typing.NamedTuple", "typing_extensions.NamedTuple"}


def _arguments(expression: object) -> dict[str, Any]:
    if not isinstance(expression, griffe.ExprCall):
        return {}
    return {
        argument.name: argument.value
        for argument in expression.arguments
        if isinstance(argument, griffe.ExprKeyword)
    }


def _decorator(cls: griffe.Class) -> griffe.Expr | None:
    for decorator in cls.decorators:
        value = decorator.value
        if isinstance(value, griffe.Expr) and value.canonical_path in _DECORATORS:
            return value
    return None


def _computed(cls: griffe.Class, name: str) -> bool:
    """Whether a `@name.default` method computes the field's default."""
    return any(
        str(decorator.value) == f"{name}.default"
        for member in cls.members.values()
        if isinstance(member, griffe.Function)
        for decorator in member.decorators
    )


def _default(cls: griffe.Class, member: griffe.Attribute) -> str | None:
    """The field's default as written (None: required), and the field's own
    value made that default, so the reference shows `= ()`, not `attrs.field(...)`."""
    value = member.value
    if not (isinstance(value, griffe.ExprCall) and value.canonical_path in _FIELDS):
        return None if value is None else str(value)
    field = _arguments(value)
    default = field.get("default")
    computed = False
    if isinstance(default, griffe.ExprCall) and default.canonical_path in _FACTORIES:
        # `attrs.Factory(f, takes_self=True)` computes the default from the
        # instance, like a `@name.default` method: shown as `...`, not as `f()`.
        computed = str(_arguments(default).get("takes_self")) == "True"
        factory = default.arguments[0] if default.arguments else None
        default = None if factory is None else griffe.ExprCall(factory, [])  # type: ignore[arg-type]
    if "factory" in field:
        default = griffe.ExprCall(field["factory"], [])
    shown = None if default is None else str(default)
    if computed or (shown is None and _computed(cls, member.name)):
        shown = "..."
    member.value = shown
    return shown


def _parameters(cls: griffe.Class, kw_only: bool) -> list[griffe.Parameter]:
    parameters = []
    for member in cls.members.values():
        if member.is_alias or not isinstance(member, griffe.Attribute):
            continue
        if member.annotation is None or "property" in member.labels:
            continue
        if "class-attribute" in member.labels and "instance-attribute" not in member.labels:
            continue  # a ClassVar
        value = member.value
        is_field = isinstance(value, griffe.ExprCall) and value.canonical_path in _FIELDS
        field = _arguments(value) if is_field else {}
        default = _default(cls, member)
        if str(field.get("init")) == "False":
            continue
        keyword = kw_only or str(field.get("kw_only")) == "True"
        parameters.append(
            griffe.Parameter(
                member.name.lstrip("_"),  # attrs drops leading underscores
                annotation=member.annotation,
                kind=(
                    griffe.ParameterKind.keyword_only
                    if keyword
                    else griffe.ParameterKind.positional_or_keyword
                ),
                default=default,
                docstring=member.docstring,
            )
        )
    return parameters


class AttrsInit(griffe.Extension):
    """Add the `__init__` attrs generates to every attrs class griffe loads
    (and the one a `NamedTuple` has, which griffe does not make either)."""

    def on_class_members(self, *, cls: griffe.Class, **kwargs: Any) -> None:
        if "__init__" in cls.members:
            return
        decorator = _decorator(cls)
        if decorator is not None:
            options = _arguments(decorator)
            if str(options.get("init")) == "False":
                return
            parameters = _parameters(cls, str(options.get("kw_only")) == "True")
        elif any(
            str(base) in _NAMED_TUPLES or getattr(base, "canonical_path", None) in _NAMED_TUPLES
            for base in cls.bases
        ):
            parameters = _parameters(cls, kw_only=False)
        else:
            return
        init = griffe.Function(
            "__init__",
            lineno=cls.lineno,
            endlineno=cls.lineno,
            parent=cls,
            parameters=griffe.Parameters(
                griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword),
                *parameters,
            ),
            returns="None",
        )
        cls.set_member("__init__", init)
