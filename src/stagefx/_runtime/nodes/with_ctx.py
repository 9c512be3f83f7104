"""`with_ctx`: run a child in the Env extended with values."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, final

import attrs

from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._runtime.node import Next, Node, Within

__all__ = ["WithCtx"]


def _check_values(_: object, __: object, value: tuple[object, ...]) -> None:
    for item in value:
        if isinstance(item, Env):
            raise TypeError("with_ctx takes values to add to the Env, not an Env")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class WithCtx(Node):
    """Run `child` with `values` added to the Env: everything it runs (models,
    tools, custom stages with `env`) finds them with `env.get(T)`, over any
    value of the same type outside. As with `Env.updated`, a `Clock` or a
    `Tracer` among them takes that role."""

    kind: ClassVar[str] = "with_ctx"

    child: Node
    values: tuple[object, ...] = attrs.field(validator=_check_values)

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def details(self) -> Mapping[str, AttributeValue]:
        return {"values": ", ".join(type(value).__name__ for value in self.values)}

    def start(self, state: StageState, env: Env) -> Next:
        return Within(self.child, state, env.updated(*self.values))
