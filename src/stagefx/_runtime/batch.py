"""Running one pipeline over many inputs: bounded concurrency, lazy inputs, a
`Result` per item, progress and a summary.

Inputs are read only when a slot is free, so memory grows with `concurrency`,
not with the number of inputs. One item's failure never stops the others.
Everything runs in one task group: cancelling the caller cancels every item in
flight, and no task outlives the call.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from typing import TextIO, TypeAlias, final

import anyio
import attrs
from anyio.streams.memory import MemoryObjectSendStream
from returns.result import Failure, Result, Success

from stagefx._core.content import ContentElement, ContentPart, MultimodalContent
from stagefx._core.errors import StageException, StageExecutionError, describe_error
from stagefx._core.iteration import close_iterator, produced
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals
from stagefx._env.env import Env
from stagefx._runtime.interpreter import interpret
from stagefx._runtime.node import Node

_logger = logging.getLogger("stagefx")

__all__ = ["BatchInput", "BatchProgress", "BatchResults", "Outcome", "batch", "map_over"]

BatchInput: TypeAlias = StageState | ContentElement
"""An item: a whole initial state, or content that becomes its `result`."""

Outcome: TypeAlias = Result[StageState, StageException]


@final
@attrs.frozen(slots=True)
class BatchProgress:
    """Where a run over many inputs stands; the last one is its summary.

    `outcomes` counts items by outcome type (`"success"`, or the failure's
    class name); `usage` is what the finished items spent; `elapsed` is Env
    clock seconds since the start; `total` is known when the inputs have a length.
    """

    done: int = 0
    failed: int = 0
    in_flight: int = 0
    total: int | None = None
    usage: UsageTotals = attrs.field(factory=UsageTotals)
    elapsed: float = 0.0
    outcomes: Mapping[str, int] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type

    @property
    def tokens_per_minute(self) -> float:
        """Input and output tokens spent per minute so far."""
        tokens = self.usage.input_tokens + self.usage.output_tokens
        return 0.0 if self.elapsed <= 0 else tokens * 60.0 / self.elapsed

    @property
    def remaining(self) -> float | None:
        """Estimated seconds left, when the total is known and items have finished."""
        if self.total is None or self.done == 0:
            return None
        return self.elapsed / self.done * (self.total - self.done)


class BatchResults(list[Outcome]):
    """`Stage.batch`'s outcomes in input order, with the run's `summary`."""

    summary: BatchProgress

    def __init__(self, outcomes: Iterable[Outcome], summary: BatchProgress) -> None:
        super().__init__(outcomes)
        self.summary = summary


_NONE = UsageTotals()

ProgressCallback: TypeAlias = Callable[[BatchProgress], object]


def _as_state(item: object) -> StageState:
    if isinstance(item, StageState):
        return item
    if isinstance(item, str | MultimodalContent | ContentPart):
        return StageState(result=item)
    raise TypeError(
        f"a batch input is a StageState or content (str, MultimodalContent, a content part), "
        f"not {type(item).__name__}"
    )


@final
class _Tally:
    """The running counts behind `BatchProgress`, told to the progress sink."""

    def __init__(self, env: Env, total: int | None, sink: ProgressCallback | None) -> None:
        self.env = env
        self.total = total
        self.sink = sink
        self.started = env.clock.now()
        self.done = self.failed = self.in_flight = 0
        self.usage = UsageTotals()
        self.kinds: Counter[str] = Counter()

    def begin(self) -> None:
        self.in_flight += 1
        if self.sink is not None:
            self.tell()

    def end(self, start: StageState, outcome: Outcome) -> None:
        self.in_flight -= 1
        self.done += 1
        if isinstance(outcome, Success):
            self.kinds["success"] += 1
            finished = outcome.unwrap()
        else:
            error = outcome.failure()
            self.failed += 1
            self.kinds[type(error).__name__] += 1
            finished = error.state
        if finished.values is not start.values:  # an item that changed no values spent nothing
            spent = finished.get(UsageTotals, _NONE).beyond(start.get(UsageTotals, _NONE))
            if spent.models:
                self.usage = self.usage.combined(spent)
        if self.sink is not None:
            self.tell()

    def snapshot(self) -> BatchProgress:
        return BatchProgress(
            done=self.done,
            failed=self.failed,
            in_flight=self.in_flight,
            total=self.total,
            usage=self.usage,
            elapsed=self.env.clock.now() - self.started,
            outcomes=dict(self.kinds),
        )

    def tell(self) -> None:
        """Give the sink the counts; a sink that raises is the user's bug, not
        the batch's: it is logged once and no longer called, and every item's
        paid result is kept."""
        if self.sink is None:
            return
        try:
            self.sink(self.snapshot())
        except Exception as error:
            self.sink = None
            _logger.warning(
                "the batch's progress callback raised; it is no longer called: %s",
                describe_error(error),
            )


async def _run(
    node: Node,
    inputs: Iterable[object] | AsyncIterable[object],
    concurrency: int,
    env: Env,
    tally: _Tally,
    emit: Callable[[int, Outcome], Awaitable[None]],
) -> None:
    """Run every input through `node`, at most `concurrency` at once, reading
    the next input only when a slot frees; `emit` each outcome as it finishes.
    An error from the inputs themselves stops reading: the items in flight
    finish, then it is raised."""
    slots = anyio.Semaphore(concurrency)
    broken: list[BaseException] = []

    async def one(index: int, item: object) -> None:
        try:
            try:
                start = _as_state(item)
            except TypeError as error:
                start = StageState()
                outcome: Outcome = Failure(StageExecutionError.wrap(error, start))
            else:
                finished = await interpret(node, start, env)
                outcome = (
                    Failure(finished) if isinstance(finished, StageException) else Success(finished)
                )
            tally.end(start, outcome)
            await emit(index, outcome)
        finally:
            slots.release()

    async with anyio.create_task_group() as group:
        index = 0
        items = aiter(inputs) if isinstance(inputs, AsyncIterable) else None
        plain = iter(inputs) if not isinstance(inputs, AsyncIterable) else None
        try:
            while True:
                try:
                    slots.acquire_nowait()  # no trip through the event loop while slots are free
                except anyio.WouldBlock:
                    await slots.acquire()
                try:
                    item = next(plain) if plain is not None else await items.__anext__()  # type: ignore[union-attr]  # one of the two is set
                except (StopIteration, StopAsyncIteration):
                    slots.release()
                    break
                except Exception as error:  # the user's inputs failed: stop reading
                    slots.release()
                    broken.append(error)
                    break
                tally.begin()
                group.start_soon(one, index, item)
                index += 1
        finally:  # the user's generator of inputs, closed now, not when collected
            await close_iterator(items if items is not None else plain)
    if broken:
        raise broken[0]


def _total(inputs: object) -> int | None:
    try:
        return len(inputs)  # type: ignore[arg-type]  # any sized input tells its total
    except TypeError:
        return None


def _check_inputs(inputs: object) -> None:
    """Refuse one input given as the inputs: a str is an iterable of its
    characters, and a batch over it would make a paid call per character."""
    if isinstance(inputs, str | bytes | MultimodalContent | StageState):
        raise TypeError(
            f"batch and map take an iterable of inputs, not one {type(inputs).__name__}: "
            "pass [text] for a single input"
        )


def _check_concurrency(concurrency: object) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise ValueError(f"concurrency needs an int >= 1, got {concurrency!r}")
    return concurrency


async def batch(
    node: Node,
    inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
    *,
    concurrency: int,
    env: Env,
    progress: bool | ProgressCallback,
) -> BatchResults:
    """Every outcome, in input order, with the run's summary."""
    _check_inputs(inputs)
    limit = _check_concurrency(concurrency)
    sink, bar = _progress_sink(progress, _total(inputs))
    tally = _Tally(env, _total(inputs), sink)
    found: dict[int, Outcome] = {}

    async def keep(index: int, outcome: Outcome) -> None:
        found[index] = outcome

    try:
        await _run(node, inputs, limit, env, tally, keep)
    finally:
        if bar is not None:
            bar.close()
    return BatchResults((found[index] for index in range(len(found))), tally.snapshot())


async def map_over(
    node: Node,
    inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
    *,
    concurrency: int,
    env: Env,
    progress: bool | ProgressCallback,
) -> AsyncGenerator[tuple[int, Outcome]]:
    """`(input index, outcome)` as items finish.

    Break out early through `contextlib.aclosing(...)`, so the items still in
    flight are cancelled in the task that runs them.
    """
    _check_inputs(inputs)
    limit = _check_concurrency(concurrency)
    sink, bar = _progress_sink(progress, _total(inputs))
    tally = _Tally(env, _total(inputs), sink)
    broken: list[Exception] = []

    async def produce(send: MemoryObjectSendStream[tuple[int, Outcome]]) -> None:
        async def emit(index: int, outcome: Outcome) -> None:
            await send.send((index, outcome))

        try:
            await _run(node, inputs, limit, env, tally, emit)
        except Exception as error:  # the inputs failed: raised once the rest is out
            broken.append(error)

    try:
        async with contextlib.aclosing(produced(produce, limit)) as outcomes:
            async for found in outcomes:
                yield found
    finally:
        if bar is not None:
            bar.close()
    if broken:
        raise broken[0]


@final
class _Bar:
    """A rich progress bar on a terminal: done, failed, in flight, tokens per
    minute, time left."""

    def __init__(self, total: int | None, terminal: TextIO) -> None:
        from rich.console import Console  # rich only when a bar is drawn
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]stagefx"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}"),
            TextColumn("in flight {task.fields[in_flight]}"),
            TextColumn("{task.fields[tpm]} tok/min"),
            TimeRemainingColumn(),
            console=Console(file=terminal),  # stderr: stdout may be the user's data
            transient=False,
        )
        self._task = self._progress.add_task("run", total=total, failed=0, in_flight=0, tpm=0)
        self._progress.start()

    def update(self, progress: BatchProgress) -> None:
        self._progress.update(
            self._task,
            completed=progress.done,
            failed=progress.failed,
            in_flight=progress.in_flight,
            tpm=math.floor(progress.tokens_per_minute),
        )

    def close(self) -> None:
        self._progress.stop()


def _terminal() -> TextIO | None:
    """stderr, if it is an open terminal (a pythonw process or a daemon has none)."""
    stream = sys.stderr
    try:
        return stream if stream is not None and stream.isatty() else None
    except (ValueError, OSError):  # closed, or not a real file
        return None


def _progress_sink(
    progress: bool | ProgressCallback, total: int | None
) -> tuple[ProgressCallback | None, _Bar | None]:
    if progress is False:
        return None, None
    if progress is True:
        terminal = _terminal()
        if terminal is None:
            return None, None  # silent when stderr is not a terminal (or is missing)
        bar = _Bar(total, terminal)
        return bar.update, bar
    if callable(progress):
        return progress, None
    raise TypeError(f"progress needs a bool or a callable, got {type(progress).__name__}")
