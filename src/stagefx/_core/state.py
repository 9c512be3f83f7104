"""StageState: the immutable snapshot every stage receives and returns."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Literal, TypeVar, cast, final, overload

import attrs

from stagefx._core.content import ContentElement, MultimodalContent
from stagefx._core.conversation import ModelContext, ModelInput, ModelOutput

__all__ = ["StageState", "checked_context"]

T = TypeVar("T")
_MISSING = object()


def _context(value: Iterable[ModelInput | ModelOutput]) -> ModelContext:
    if type(value) is tuple:
        # Already a typed tuple: checking each element is mypy's job.
        return value  # pyright: ignore[reportUnknownVariableType]  # `type() is tuple` narrows to tuple[Unknown, ...]; no cast on this hot path
    return checked_context(value)


def checked_context(value: object) -> ModelContext:
    """`value` as a context, every turn checked: for what user code hands back."""
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"a context is turns (ModelInput, ModelOutput), not {type(value).__name__}")
    context = tuple(cast("Iterable[object]", value))  # items of any type, checked here
    for element in context:
        if not isinstance(element, ModelInput | ModelOutput):
            raise TypeError(
                f"context holds ModelInput and ModelOutput, not {type(element).__name__}"
            )
    return cast(ModelContext, context)  # every turn checked just above


def _result(value: ContentElement) -> MultimodalContent:
    if isinstance(value, MultimodalContent):
        return value
    return MultimodalContent.of(value)


def _values(value: Iterable[object]) -> tuple[object, ...]:
    by_type: dict[type, object] = {}
    for item in value:
        by_type[type(item)] = item
    return tuple(sorted(by_type.values(), key=lambda item: type(item).__qualname__))


@final
@attrs.frozen(slots=True)
class StageState:
    """The conversation context, the latest result, and user values keyed by type.

    Never mutated: `updated(...)` returns a new state. User values are looked up
    by their exact type with `get(T)`; storing a value replaces any of its type.

    Example: `StageState(result="draft").updated(Budget(3), result="final").get(Budget)`
    """

    context: ModelContext = attrs.field(default=(), converter=_context)
    result: MultimodalContent = attrs.field(default=MultimodalContent.empty, converter=_result)
    values: tuple[object, ...] = attrs.field(default=(), converter=_values)

    empty: ClassVar[StageState]

    @classmethod
    def of(
        cls,
        *values: object,
        context: Iterable[ModelInput | ModelOutput] = (),
        result: ContentElement | None = None,
    ) -> StageState:
        """draive's spelling: `StageState.of(*values, context=..., result=...)`."""
        return cls(
            context=context,
            result=MultimodalContent.empty if result is None else result,
            values=values,
        )

    @overload
    def get(self, kind: type[T]) -> T | None: ...

    @overload
    def get(self, kind: type[T], default: T) -> T: ...

    @overload
    def get(self, kind: type[T], *, required: Literal[True]) -> T: ...

    def get(self, kind: type[T], default: object = _MISSING, *, required: bool = False) -> T | None:
        """The stored value of exactly type `kind`, else `default` (or None);
        with `required=True` a missing value raises `LookupError`."""
        for item in self.values:
            if type(item) is kind:
                return item
        if default is not _MISSING:
            return default  # type: ignore[return-value]  # default: T by overload
        if required:
            raise LookupError(f"{kind.__qualname__} is not in the stage state")
        return None

    def merged(self, other: StageState, /) -> StageState:
        """This state followed by `other`: contexts concatenated, results joined,
        values of both (`other`'s win where both hold a type)."""
        return StageState(
            context=(*self.context, *other.context),
            result=MultimodalContent.of(self.result, other.result),
            values=(*self.values, *other.values),
        )

    def updated(
        self,
        *values: object,
        context: Iterable[ModelInput | ModelOutput] | None = None,
        result: ContentElement | None = None,
    ) -> StageState:
        """A copy with the given context, result and/or user values replaced."""
        if values:
            return StageState(
                context=self.context if context is None else context,
                result=self.result if result is None else result,
                values=(*self.values, *values),
            )
        # The hot path of every stage: skip the converters for already-normal fields.
        updated = object.__new__(StageState)
        set_field = object.__setattr__
        set_field(updated, "context", self.context if context is None else _context(context))
        set_field(updated, "result", self.result if result is None else _result(result))
        set_field(updated, "values", self.values)
        return updated


StageState.empty = StageState()
