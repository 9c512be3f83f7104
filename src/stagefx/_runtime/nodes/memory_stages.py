"""Memory nodes: recall a state from a memory, or remember the current one."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal, cast, final

import attrs

from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals, with_usage, without_usage
from stagefx._env.env import Env
from stagefx._env.memory import StageMemory
from stagefx._runtime.node import Node, Outcome, SpanSpec
from stagefx._runtime.user_code import failure

__all__ = ["MemoryRecall", "MemoryRemember"]


def _check_memory(_: object, __: object, value: StageMemory) -> None:
    if not callable(getattr(value, "recall", None)) or not callable(
        getattr(value, "remember", None)
    ):
        raise TypeError(
            f"a stage memory needs recall() and remember(*states), got {type(value).__name__}"
        )


def _check_handling(_: object, __: object, value: object) -> None:
    if value not in ("replace", "merge"):
        raise ValueError(f"memory_recall handling must be 'replace' or 'merge', got {value!r}")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class MemoryRecall(Node):
    """Recall a state: `replace` the current one with it, or `merge` it in
    (contexts concatenated, results joined). The run's usage stays the run's:
    whatever usage the recalled state holds is not counted again."""

    kind: ClassVar[str] = "memory_recall"
    leaf: ClassVar[bool] = True

    memory: StageMemory = attrs.field(validator=_check_memory)
    handling: Literal["replace", "merge"] = attrs.field(validator=_check_handling)

    def details(self) -> Mapping[str, AttributeValue]:
        return {"handling": self.handling}

    def span(self) -> SpanSpec:
        return ("memory_recall", {"handling": self.handling})

    async def run(self, state: StageState, env: Env) -> Outcome:
        try:
            recalled = cast(object, await self.memory.recall())  # the user's: anything
            if not isinstance(recalled, StageState):
                raise TypeError(
                    f"memory recall must give a StageState, got {type(recalled).__name__}"
                )
        except Exception as error:
            return failure(error, state)
        usage = state.get(UsageTotals, UsageTotals())
        recalled = without_usage(recalled)
        if self.handling == "merge":
            recalled = state.merged(recalled)
        return with_usage(without_usage(recalled), usage)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class MemoryRemember(Node):
    """Remember the current state; pass it on unchanged."""

    kind: ClassVar[str] = "memory_remember"
    leaf: ClassVar[bool] = True

    memory: StageMemory = attrs.field(validator=_check_memory)

    def span(self) -> SpanSpec:
        return ("memory_remember", None)

    async def run(self, state: StageState, env: Env) -> Outcome:
        try:
            await self.memory.remember(state)
        except Exception as error:
            return failure(error, state)
        return state
