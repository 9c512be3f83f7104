"""Sequences and loops: the interpreter runs them as flat loops (stack-safe)."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import ClassVar, Literal, Protocol, final

import attrs

from stagefx._core.errors import StageException
from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.tracing import annotate
from stagefx._runtime.calls import failure, require_count, resolve_bool
from stagefx._runtime.node import Frame, Next, Node, Outcome, run_leaf

__all__ = ["Loop", "LoopCondition", "Noop", "Sequence"]


class LoopCondition(Protocol):
    """`(*, state, iteration) -> bool`, sync or async; `iteration` counts finished runs."""

    def __call__(self, *, state: StageState, iteration: int) -> bool | Awaitable[bool]: ...


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Noop(Node):
    """The identity: passes its state on untouched (and vanishes from sequences)."""

    kind: ClassVar[str] = "noop"
    leaf: ClassVar[bool] = True

    async def run(self, state: StageState, env: Env) -> Outcome:
        return state


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Sequence(Node):
    """Kleisli composition of `parts`, short-circuiting on the first failure.

    Built flat (`Stage.sequence` splices nested sequences in), and run as a
    loop: consecutive leaves are awaited one after another in one coroutine.
    """

    kind: ClassVar[str] = "sequence"
    laws: ClassVar[tuple[str, ...]] = (
        "check_identity",
        "check_associativity",
        "check_short_circuit",
    )

    parts: tuple[Node, ...]

    def children(self) -> tuple[Node, ...]:
        return self.parts

    def start(self, state: StageState, env: Env) -> Next:
        if not self.parts:
            return state
        return _SequenceFrame(self.parts, env).advance(state, 0)


@final
class _SequenceFrame(Frame):
    __slots__ = ("env", "index", "parts")

    def __init__(self, parts: tuple[Node, ...], env: Env) -> None:
        self.parts = parts
        self.env = env
        self.index = 0

    def advance(self, state: StageState, index: int) -> Next:
        part = self.parts[index]
        if part.leaf:
            return self._leaves(state, index)
        if index + 1 == len(self.parts):
            return (part, state)  # a tail call: the frame is done
        self.index = index + 1
        return (part, state, self)

    def resume(self, outcome: Outcome) -> Next:
        if isinstance(outcome, StageException):
            return outcome
        return self.advance(outcome, self.index)

    async def _leaves(self, state: StageState, index: int) -> Next:
        """Run consecutive leaves in one loop: no frame, no tuple per stage."""
        parts, env, count = self.parts, self.env, len(self.parts)
        run = run_leaf if env.tracer_active else None
        while index < count:
            part = parts[index]
            if not part.leaf:
                return self.advance(state, index)
            outcome = await (part.run(state, env) if run is None else run(part, state, env))
            if type(outcome) is not StageState:
                return outcome
            state = outcome
            index += 1
        return state


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
def _check_condition(_: object, __: object, value: LoopCondition) -> None:
    if not callable(value):
        raise TypeError(f"loop condition must be callable, got {type(value).__name__}")


def _check_mode(_: object, __: object, value: Literal["post_check", "pre_check"]) -> None:
    if value not in ("post_check", "pre_check"):
        raise ValueError(f"loop mode must be 'post_check' or 'pre_check', got {value!r}")


def _check_cap(_: object, __: object, value: int | None) -> None:
    if value is not None:
        require_count(value, "Stage.loop(max_iterations=...)", 0)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Loop(Node):
    """Run `body` while `condition` holds: checked after each run (`post_check`,
    so the body runs at least once) or before it (`pre_check`).
    `max_iterations` caps the number of runs; reaching it ends the loop."""

    kind: ClassVar[str] = "loop"
    laws: ClassVar[tuple[str, ...]] = ("check_loop",)

    body: Node
    condition: LoopCondition = attrs.field(validator=_check_condition)
    mode: Literal["post_check", "pre_check"] = attrs.field(validator=_check_mode)
    max_iterations: int | None = attrs.field(validator=_check_cap)

    def children(self) -> tuple[Node, ...]:
        body = self.body
        return body.parts if isinstance(body, Sequence) else (body,)

    def details(self) -> Mapping[str, AttributeValue]:
        if self.max_iterations is None:
            return {"mode": self.mode}
        return {"mode": self.mode, "max_iterations": self.max_iterations}

    def span(self) -> tuple[str, None]:
        return ("loop", None)

    def start(self, state: StageState, env: Env) -> Next:
        frame = _LoopFrame(self, env)
        if self.mode == "pre_check":
            return frame.check(state)
        return frame.go(state)


@final
class _LoopFrame(Frame):
    __slots__ = ("cap", "env", "iteration", "node")

    def __init__(self, node: Loop, env: Env) -> None:
        self.node = node
        self.env = env
        self.iteration = 0
        self.cap = -1 if node.max_iterations is None else node.max_iterations

    def go(self, state: StageState) -> Next:
        if self.iteration == self.cap:
            annotate("iterations", self.iteration)
            return state
        body = self.node.body
        if body.leaf:
            return self._spin(state)
        return (body, state, self)

    def resume(self, outcome: Outcome) -> Next:
        self.iteration += 1
        if isinstance(outcome, StageException):
            annotate("iterations", self.iteration)
            return outcome
        return self.check(outcome)

    def check(self, state: StageState) -> Next:
        if self.iteration == self.cap:  # the cap ends the loop before any question
            annotate("iterations", self.iteration)
            return state
        try:
            proceed = self.node.condition(state=state, iteration=self.iteration)
        except Exception as error:
            return failure(error, state)
        if proceed is True:
            return self.go(state)
        if proceed is False:
            annotate("iterations", self.iteration)
            return state
        return self._checked(proceed, state)

    async def _checked(self, proceed: object, state: StageState) -> Next:
        try:
            answer = await resolve_bool(proceed, "loop condition")  # type: ignore[arg-type]  # checked inside
        except Exception as error:
            return failure(error, state)
        if answer:
            return self.go(state)
        annotate("iterations", self.iteration)
        return state

    async def _spin(self, state: StageState) -> Next:
        """A leaf body: iterate in one coroutine, as a plain `while` loop."""
        body, env, condition, cap = self.node.body, self.env, self.node.condition, self.cap
        iteration = self.iteration
        run = run_leaf if env.tracer_active else None
        while True:
            outcome = await (body.run(state, env) if run is None else run(body, state, env))
            iteration += 1
            if type(outcome) is not StageState:
                annotate("iterations", iteration)
                return outcome
            state = outcome
            if iteration == cap:
                annotate("iterations", iteration)
                return state
            try:
                proceed = condition(state=state, iteration=iteration)
                if proceed is not True and proceed is not False:
                    proceed = await resolve_bool(proceed, "loop condition")
            except Exception as error:
                return failure(error, state)
            if not proceed:
                annotate("iterations", iteration)
                return state
