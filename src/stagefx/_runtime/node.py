"""The node: one frozen class per combinator, and the closed vocabulary the
interpreter speaks with them.

A leaf node (`leaf = True`) does its work in `run`. A composite node answers
`start(state, env)` with a `Next`, one of:

- an outcome (`StageState | StageException`): the node is done;
- `Run(node, state)`: evaluate that child in the node's place (a tail call);
  `Run(node, state, frame)`: then hand its outcome to `frame.resume`, which
  answers with a `Next` again;
- `Within(node, state, env[, frame])`: the same, in another Env (`with_ctx`, a
  named stage's event path); the interpreter returns to its Env afterwards;
- `Wait(awaitable)`: the node must wait (a condition, a clock, a cache store)
  before it knows.

Frames live on the interpreter's explicit stack, never on Python's, so any
depth of nesting runs. `Frame.abort` is told when an exception (cancellation,
mostly) unwinds through the frame: it cleans up and may absorb it (a timeout).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, ClassVar, Generic, ParamSpec, TypeAlias, final

import attrs

from stagefx._core.errors import StageException
from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._env.tracing import close_span, close_span_raised, open_span
from stagefx._runtime.user_code import failure

if TYPE_CHECKING:
    from stagefx._env.env import Env

__all__ = [
    "Frame",
    "Law",
    "Next",
    "Node",
    "Outcome",
    "Run",
    "SpanSpec",
    "Wait",
    "Within",
    "run_leaf",
]

P = ParamSpec("P")

Outcome: TypeAlias = StageState | StageException
SpanSpec: TypeAlias = tuple[str, Mapping[str, AttributeValue] | None]
Next: TypeAlias = "StageState | StageException | Run | Within | Wait"


@final
class Run:
    """A `Next`: evaluate `node` on `state` in the asking node's place, then hand
    the outcome to `frame`, if given."""

    __slots__ = ("frame", "node", "state")

    def __init__(self, node: Node, state: StageState, frame: Frame | None = None) -> None:
        self.node = node
        self.state = state
        self.frame = frame


@final
class Within:
    """A `Next`: `Run` in `env`; the interpreter comes back to its own Env once
    the child has its outcome. Frames keep the Env they started in, so only the
    interpreter's Env switches, and nesting stays stack-safe."""

    __slots__ = ("env", "frame", "node", "state")

    def __init__(self, node: Node, state: StageState, env: Env, frame: Frame | None = None) -> None:
        self.node = node
        self.state = state
        self.env = env
        self.frame = frame


@final
class Wait:
    """A `Next`: what comes next is known once `next` is awaited."""

    __slots__ = ("next",)

    def __init__(self, next: Awaitable[Next]) -> None:
        self.next = next


@final
@attrs.frozen(slots=True)
class Law(Generic[P]):
    """A law a node obeys: its `name`, and the async `check` that raises
    `LawViolation` (see `equivalence`) where the law does not hold."""

    name: str
    """What the law is called (`"identity"`, `"loop"`, ...)."""
    check: Callable[P, Awaitable[None]]
    """The check, taking the stages (and functions) the law speaks of, a state and an Env."""


class Node:
    """One combinator in a Stage's tree.

    Subclasses are frozen attrs classes compared by identity (a tree may be
    10,000 deep: nothing may walk it recursively): they check their arguments when
    built, say how `describe()` shows them (`kind`, `details`, `children`),
    whether they open a span (`span`), and which law checkers of
    `stagefx.testing.laws` hold for them (`laws`).
    """

    __slots__ = ()

    kind: ClassVar[str]
    leaf: ClassVar[bool] = False
    laws: ClassVar[tuple[Law[...], ...]] = ()

    def __repr__(self) -> str:
        return f"<{self.kind} node>"

    @property
    def name(self) -> str | None:
        """The `with_meta` name `describe()` shows, if any."""
        return None

    def children(self) -> tuple[Node, ...]:
        """The nodes this one wraps or composes, in order."""
        return ()

    def details(self) -> Mapping[str, AttributeValue]:
        """Settings `describe()` shows."""
        return {}

    def span(self) -> SpanSpec | None:
        """The span (name, attributes) opened around this node when tracing."""
        return None

    def start(self, state: StageState, env: Env) -> Next:
        """A composite's first move (leaves are run with `run`)."""
        raise NotImplementedError(f"{type(self).__name__} is a leaf: use run()")

    async def run(self, state: StageState, env: Env) -> Outcome:
        """A leaf's whole work."""
        raise NotImplementedError(f"{type(self).__name__} is composite: use start()")


class Frame:
    """A composite node's continuation, kept on the interpreter's stack."""

    __slots__ = ()

    def resume(self, outcome: Outcome) -> Next:
        """What to do once the child evaluated last has given `outcome`."""
        raise NotImplementedError

    async def abort(self, error: BaseException) -> Outcome | None:
        """`error` unwinds through this frame: clean up; an outcome absorbs it."""
        return None


async def run_leaf(node: Node, state: StageState, env: Env) -> Outcome:
    """A leaf's `run` as a value, inside the span it declares when the Env is
    tracing; what a leaf raises (never by design) becomes its failure.

    Leaves need no frame: the interpreter, traced sequences and loops,
    concurrent branches and batch items run them through here.
    """
    try:
        if not env.tracer_active:
            return await node.run(state, env)
        spanned = node.span()
        if spanned is None:
            return await node.run(state, env)
    except Exception as error:
        return failure(error, state)
    handle = open_span(env.tracer, env.clock.now, *spanned)
    try:
        outcome = await node.run(state, env)
    except Exception as error:
        outcome = failure(error, state)
    except BaseException as error:
        close_span_raised(handle, error)
        raise
    close_span(handle, outcome)
    return outcome
