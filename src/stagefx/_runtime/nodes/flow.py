"""Sequences and loops: the interpreter runs them as flat loops (stack-safe)."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import ClassVar, Literal, Protocol, final

import anyio.lowlevel
import attrs
from returns.result import Failure, Success

from stagefx._core.errors import StageException
from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.tracing import annotate
from stagefx._runtime.equivalence import LawViolation, Probe, Staged, assert_equivalent, attempted
from stagefx._runtime.node import Frame, Law, Next, Node, Outcome, Run, Wait, run_leaf
from stagefx._runtime.user_code import failure, require_count, resolve_bool

__all__ = [
    "Loop",
    "LoopCondition",
    "Noop",
    "Sequence",
    "check_associativity",
    "check_identity",
    "check_loop",
    "check_short_circuit",
]


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


# The laws of `Sequence`, checked on nested sequences (`Stage.sequence` builds them flat).


async def check_identity(stage: Staged, state: StageState, env: Env) -> None:
    """`sequence(noop, s) == s == sequence(s, noop)`."""
    alone = await attempted(stage.node, state, env)
    assert_equivalent(
        "left identity", await attempted(Sequence((Noop(), stage.node)), state, env), alone
    )
    assert_equivalent(
        "right identity", await attempted(Sequence((stage.node, Noop())), state, env), alone
    )


async def check_associativity(
    first: Staged, second: Staged, third: Staged, state: StageState, env: Env
) -> None:
    """`sequence(sequence(a, b), c) == sequence(a, sequence(b, c)) == sequence(a, b, c)`."""
    a, b, c = first.node, second.node, third.node
    flat = await attempted(Sequence((a, b, c)), state, env)
    left = await attempted(Sequence((Sequence((a, b)), c)), state, env)
    right = await attempted(Sequence((a, Sequence((b, c)))), state, env)
    assert_equivalent("associativity (left nesting)", left, flat)
    assert_equivalent("associativity (right nesting)", right, flat)


async def check_short_circuit(failing: Staged, after: Staged, state: StageState, env: Env) -> None:
    """If `failing` fails, `sequence(failing, after)` fails the same way and
    never runs `after`."""
    alone = await attempted(failing.node, state, env)
    if not isinstance(alone, Failure):
        raise LawViolation(f"short circuit: the first stage did not fail: {alone!r}")
    ran: list[StageState] = []

    def spy(reached: StageState) -> StageState:
        ran.append(reached)
        return reached

    chained = await attempted(Sequence((failing.node, Probe(spy), after.node)), state, env)
    assert_equivalent("short circuit", chained, alone)
    if ran:
        raise LawViolation("short circuit: a stage after the failure ran")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Sequence(Node):
    """Kleisli composition of `parts`, short-circuiting on the first failure.

    Built flat (`Stage.sequence` splices nested sequences in), and run as a
    loop: consecutive leaves are awaited one after another in one coroutine.
    """

    kind: ClassVar[str] = "sequence"
    laws: ClassVar[tuple[Law[...], ...]] = (
        Law("identity", check_identity),
        Law("associativity", check_associativity),
        Law("short circuit", check_short_circuit),
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
            return Wait(self._leaves(state, index))
        if index + 1 == len(self.parts):
            return Run(part, state)  # a tail call: the frame is done
        self.index = index + 1
        return Run(part, state, self)

    def resume(self, outcome: Outcome) -> Next:
        if isinstance(outcome, StageException):
            return outcome
        return self.advance(outcome, self.index)

    async def _leaves(self, state: StageState, index: int) -> Next:
        """Run consecutive leaves in one loop: no frame, no tuple per stage."""
        parts, env, count = self.parts, self.env, len(self.parts)
        while index < count:
            part = parts[index]
            if not part.leaf:
                return self.advance(state, index)
            outcome = await run_leaf(part, state, env)
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


# The law of `Loop`.


def _repeated(node: Node, times: int) -> Node:
    """`sequence(node, ..., node)`, `times` copies; `noop` for none."""
    return Sequence((node,) * times) if times else Noop()


def _below(n: int | None) -> tuple[LoopCondition, LoopCondition]:
    """`iteration < n` (always true for None) as a sync and an async loop condition."""

    def sync(*, state: StageState, iteration: int) -> bool:
        return n is None or iteration < n

    async def suspending(*, state: StageState, iteration: int) -> bool:
        await anyio.lowlevel.checkpoint()
        return n is None or iteration < n

    return sync, suspending


async def check_loop(stage: Staged, state: StageState, env: Env, *, iterations: int = 3) -> None:
    """`loop` is a repeated sequence; for every `n` from 0 to `iterations`:

    - `loop(stage, condition=false)` (`post_check`) `== stage`, and with
      `mode="pre_check"` `== noop`;
    - `loop(stage, condition=true, max_iterations=n) == sequence(stage, ..., stage)`
      with `n` copies (`noop` for none), in either mode;
    - `loop(stage, condition=iteration < n)` is `n` copies with `pre_check` and
      `max(n, 1)` with `post_check`, for a sync or an async condition:
      `iteration` counts the finished runs.

    A failing run ends the loop with its failure, as it ends the sequence.
    """
    if iterations < 0:
        raise ValueError(f"check_loop needs iterations >= 0, got {iterations!r}")
    body = stage.node
    copies = [
        await attempted(_repeated(body, n), state, env) for n in range(max(iterations, 1) + 1)
    ]
    never, always = _below(0)[0], _below(None)[0]
    assert_equivalent(
        "loop(false) post_check",
        await attempted(Loop(body, never, "post_check", None), state, env),
        copies[1],
    )
    assert_equivalent(
        "loop(false) pre_check",
        await attempted(Loop(body, never, "pre_check", None), state, env),
        Success(state),
    )
    modes: tuple[Literal["post_check", "pre_check"], ...] = ("post_check", "pre_check")
    for n in range(iterations + 1):
        for mode in modes:
            assert_equivalent(
                f"loop(true, max_iterations={n}) {mode} == {n} copies",
                await attempted(Loop(body, always, mode, n), state, env),
                copies[n],
            )
            runs = max(n, 1) if mode == "post_check" else n
            for label, condition in zip(("sync", "async"), _below(n), strict=True):
                assert_equivalent(
                    f"loop({label} iteration < {n}) {mode} == {runs} copies",
                    await attempted(Loop(body, condition, mode, None), state, env),
                    copies[runs],
                )


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Loop(Node):
    """Run `body` while `condition` holds: checked after each run (`post_check`,
    so the body runs at least once) or before it (`pre_check`).
    `max_iterations` caps the number of runs; reaching it ends the loop."""

    kind: ClassVar[str] = "loop"
    laws: ClassVar[tuple[Law[...], ...]] = (Law("loop", check_loop),)

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
            return Wait(self._spin(state))
        return Run(body, state, self)

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
        return Wait(self._checked(proceed, state))

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
        while True:
            outcome = await run_leaf(body, state, env)
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
