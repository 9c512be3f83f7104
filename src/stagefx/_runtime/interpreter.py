"""The one interpreter: runs any Stage tree with an explicit stack.

No Python recursion happens per level of nesting: a composite node's
continuation is a `Frame` pushed on a list, so a pipeline 10,000 combinators
deep runs at any recursion limit. Failures stay values. An exception
(cancellation, above all) unwinds the stack frame by frame, in LIFO order, so
cancel scopes, task groups and spans the frames hold are left as they were
entered; a frame may absorb it (`with_timeout` turns its own deadline into a
`StageTimeoutError`).
"""

from __future__ import annotations

from typing import cast, final

import anyio

from stagefx._core.errors import StageException
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.tracing import (
    SpanHandle,
    close_span,
    close_span_raised,
    open_span,
)
from stagefx._runtime.node import Frame, Next, Node, Outcome, Run, Within, run_leaf
from stagefx._runtime.user_code import failure

__all__ = ["interpret"]


class _SpanFrame(Frame):
    """Closes the span a node opened, with the node's outcome."""

    __slots__ = ("handle",)

    def __init__(self, handle: SpanHandle) -> None:
        self.handle = handle

    def resume(self, outcome: Outcome) -> Next:
        close_span(self.handle, outcome)
        return outcome

    async def abort(self, error: BaseException) -> Outcome | None:
        close_span_raised(self.handle, error)
        return None


@final
class _EnvFrame(Frame):
    """The Env the interpreter left for a `Within` child: it returns to it when
    it pops this frame, with the child's outcome or while unwinding."""

    __slots__ = ("env",)

    def __init__(self, env: Env) -> None:
        self.env = env


async def interpret(root: Node, state: StageState, env: Env) -> Outcome:
    """Run `root` on `state` in `env`; the outcome, never a raised failure: only
    cancellation (and other BaseExceptions that are not Exceptions) leaves."""
    stack: list[Frame] = []
    tracing = env.tracer_active
    step: Next = Run(root, state)
    last: StageState = state  # the last good state, for a failure raised where no node caught it
    while True:
        try:
            while True:
                if type(step) is Run:
                    if step.frame is not None:
                        stack.append(step.frame)
                    node, last = step.node, step.state
                    if node.leaf:  # the one leaf fast path
                        step = await run_leaf(node, last, env)
                        continue
                    if tracing:
                        spanned = node.span()
                        if spanned is not None:
                            stack.append(_SpanFrame(open_span(env.tracer, env.clock.now, *spanned)))
                    step = node.start(last, env)
                elif type(step) is StageState or isinstance(step, StageException):
                    if not stack:
                        return step
                    if type(step) is StageState:
                        last = step
                    frame = stack.pop()
                    if type(frame) is _EnvFrame:
                        env = frame.env
                        tracing = env.tracer_active
                    else:
                        step = frame.resume(step)
                elif type(step) is Within:
                    stack.append(_EnvFrame(env))
                    env = step.env
                    tracing = env.tracer_active
                    step = Run(step.node, step.state, step.frame)
                else:
                    step = await step.next
        except Exception as error:
            # Nodes catch user code themselves; this is the net under them all
            # (a hostile value's __eq__ in a combine, a frame's own bug): the
            # failure goes on up as a value, so retries, fallbacks and spans see it.
            step = failure(error, last)
        except BaseException as error:  # cancellation: unwind, LIFO, unless a frame absorbs it
            step, restored = await _unwind(stack, error)
            if restored is not None:
                env = restored
                tracing = env.tracer_active


def _overrides(raised: BaseException) -> bool:
    """Whether what a frame raised while unwinding replaces what unwound: not
    its own errors, nor cancellations (alone or grouped with them)."""
    cancelled = anyio.get_cancelled_exc_class()

    def harmless(each: BaseException) -> bool:
        return isinstance(each, Exception | cancelled)

    if isinstance(raised, BaseExceptionGroup):
        group = cast("BaseExceptionGroup[BaseException]", raised)
        return group.split(harmless)[1] is not None
    return not harmless(raised)


async def _unwind(stack: list[Frame], error: BaseException) -> tuple[Outcome, Env | None]:
    """Abort frames from the top until one absorbs `error` and gives the
    outcome to go on with (and the Env to go on in, if frames left one);
    re-raise it (or what a frame replaced it with) if none does."""
    restored: Env | None = None
    while stack:
        frame = stack.pop()
        if type(frame) is _EnvFrame:
            restored = frame.env
        try:
            absorbed = await frame.abort(error)
        except BaseException as replaced:
            if not _overrides(replaced):  # a frame's clean-up failed: `error` still unwinds
                continue
            error = replaced  # an interrupt or an exit: unwind that instead
            continue
        if absorbed is not None:
            return absorbed, restored
    raise error
