"""Nodes that describe a stage: its name in failure paths, and its span."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, final

import attrs

from stagefx._core.errors import StageException
from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._runtime.node import Frame, Next, Node, Outcome, Run, SpanSpec, Within, run_leaf

__all__ = ["Named", "Traced", "TracedLeaf"]


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
# `value` is whatever a caller passed; the `Attribute[str]` tells attrs the field's type.
def _check_label(_: object, __: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"with_meta(name=...) needs a non-empty str, got {value!r}")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Named(Node):
    """Failures from `child` get `label` prepended to their stage path.

    `describe()` shows the child itself under this name, not a node of its own.
    """

    kind: ClassVar[str] = "named"

    child: Node
    label: str = attrs.field(validator=_check_label)

    @property
    def name(self) -> str | None:
        return self.label

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def start(self, state: StageState, env: Env) -> Next:
        if env.events is not None:  # streamed: the child's events name this stage
            named = env.streaming_to(env.events.named(self.label))
            return Within(self.child, state, named, _NamedFrame(self.label))
        return Run(self.child, state, _NamedFrame(self.label))


@final
class _NamedFrame(Frame):
    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label

    def resume(self, outcome: Outcome) -> Next:
        if isinstance(outcome, StageException):
            return outcome.located(self.label)
        return outcome


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Traced(Node):
    """Record a span named `label` (with `attributes`) around `child`."""

    kind: ClassVar[str] = "traced"

    child: Node
    label: str
    attributes: Mapping[str, AttributeValue]

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def details(self) -> Mapping[str, AttributeValue]:
        return {"label": self.label}

    def span(self) -> SpanSpec:
        return (self.label, self.attributes)

    def start(self, state: StageState, env: Env) -> Next:
        return Run(self.child, state)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class TracedLeaf(Node):
    """`Traced` around a plain leaf is a leaf itself, with a span: no frame per
    run. (Around another `TracedLeaf`, `Traced` is used: leaves run in one call.)"""

    kind: ClassVar[str] = "traced"
    leaf: ClassVar[bool] = True

    child: Node
    label: str
    attributes: Mapping[str, AttributeValue]

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def details(self) -> Mapping[str, AttributeValue]:
        return {"label": self.label}

    def span(self) -> SpanSpec:
        return (self.label, self.attributes)

    async def run(self, state: StageState, env: Env) -> Outcome:
        child = self.child  # its own span, if it has one, nests under this one
        if env.tracer_active and child.span() is not None:
            return await run_leaf(child, state, env)
        return await child.run(state, env)
