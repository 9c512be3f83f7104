"""`RateLimits`: requests and tokens per minute, spread evenly over every model call.

A `CallLayer` (place "pacing": inside a `Recorder`, so a replayed call is
never paced) whose budgets every call under its Env shares. Calls are spaced,
not let through in per-second batches, which a server would see as bursts;
the rules are in docs/dataset.md ("Rate limits", "How the pacing works").
"""

from __future__ import annotations

import itertools
import json
import math
import threading
from collections import deque
from collections.abc import Callable, Mapping
from typing import ClassVar, Final, cast, final

import anyio
from anyio.lowlevel import RunVar

from stagefx._core.conversation import ModelInput, ModelOutput, RateLimitHint
from stagefx._core.iteration import close_iterator
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._env.clock import Clock, SystemClock
from stagefx._env.env import Env
from stagefx._model.boundary import CallLayer, LayerPlace, ModelPath
from stagefx._model.generative import ModelStream
from stagefx._model.http import finite_seconds

__all__ = [
    "CHARACTERS_PER_TOKEN",
    "DEFAULT_OUTPUT_TOKENS",
    "IMAGE_TOKENS",
    "OUTPUT_LIMIT_KEYS",
    "RateLimits",
    "estimate_tokens",
]

WINDOW: Final = 1.0
"""Seconds over which a sixtieth of each per-minute budget may go out."""

_SLACK: Final = 1e-9
"""Seconds a call may be admitted before its budget's time: a sleep to that
time can end a rounding error short of it."""

CHARACTERS_PER_TOKEN: Final = 4
"""The estimate's rule of thumb for English text and JSON."""

IMAGE_TOKENS: Final = 765
"""What an image counts for in the estimate (OpenAI's price of a 1024x1024
image at high detail)."""

DEFAULT_OUTPUT_TOKENS: Final = 256
"""Output tokens the estimate reserves when the request names no limit."""

OUTPUT_LIMIT_KEYS: Final = ("max_output_tokens", "max_completion_tokens", "max_tokens")
"""Keys of `ModelRequest.extra` read, in this order, as the output limit."""

_NO_RETRY_AFTER: Final = 1.0
"""Seconds everyone pauses after a 429 that does not say how long to wait."""

_LEAST_SLEEP: Final = 1e-6
"""A sleep is never shorter, so that it moves even a large clock reading on."""


_NOTHING_CONFIGURED: Mapping[str, object] = {}


def estimate_tokens(
    request: ModelRequest,
    tokenizer: Callable[[ModelRequest], int] | None = None,
    configured: Mapping[str, object] = _NOTHING_CONFIGURED,
) -> int:
    """Tokens `request` may cost, before it is sent: its input (`tokenizer`'s
    count, else its characters / 4 plus 765 per image) plus its output limit
    (from its `extra`, else the model's `configured` options, else 256).

    Example: 400 characters of instructions, `max_tokens=100`: 100 + 100 = 200.
    """
    if tokenizer is None:
        characters, images = _measure(request)
        counted = -(-characters // CHARACTERS_PER_TOKEN) + IMAGE_TOKENS * images
    else:
        told = cast(object, tokenizer(request))  # the user's: anything, checked here
        if isinstance(told, bool) or not isinstance(told, int) or told < 0:
            raise ValueError(f"a RateLimits tokenizer must return an int >= 0, got {told!r}")
        counted = told
    limit = _output_limit(request.extra)
    if limit is None:
        limit = _output_limit(configured)
    return counted + (DEFAULT_OUTPUT_TOKENS if limit is None else limit)


def _measure(request: ModelRequest) -> tuple[int, int]:
    """Characters and images of everything in `request` that is sent as input."""
    characters, images = len(request.instructions), 0
    for turn in request.context:
        characters += len(turn.content.as_string())
        images += len(turn.content.images())
        if isinstance(turn, ModelInput):
            for response in turn.tool_responses:
                characters += len(response.tool) + len(response.content.as_string())
                images += len(response.content.images())
        else:
            for call in turn.tool_requests:
                characters += len(call.tool) + len(_json(call.arguments))
    for tool in request.tools:
        characters += len(tool.name) + len(tool.description) + len(_json(tool.parameters))
    if request.output.schema is not None:
        characters += len(_json(request.output.schema))
    return characters, images


def _json(value: Mapping[str, object]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _output_limit(options: Mapping[str, object]) -> int | None:
    for key in OUTPUT_LIMIT_KEYS:
        value = options.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


@final
class _Waiter:
    """One caller in line: what it asks, whether it was admitted, its charges."""

    __slots__ = ("admitted", "requests", "tokens", "wake", "wanted")

    def __init__(self, wanted: int) -> None:
        self.wanted = wanted
        self.admitted = False
        self.requests: _Charge | None = None
        self.tokens: _Charge | None = None
        self.wake = anyio.Event()  # set when admitted, or when it comes to the head


@final
class _Queue:
    """One event loop's callers, first come first served. The head sleeps on
    the clock until the front of the line fits, then admits every caller from
    the front that fits, at once; a give-back cuts its sleep short."""

    __slots__ = ("head", "line")

    def __init__(self) -> None:
        self.line: deque[_Waiter] = deque()
        self.head: anyio.CancelScope | None = None


@final
class _Charge:
    """What one call was charged on a timeline, when, and in which order."""

    __slots__ = ("amount", "at", "order")

    def __init__(self, amount: int, at: float, order: int) -> None:
        self.amount = amount
        self.at = at
        self.order = order


@final
class _Timeline:
    """One budget, paced: a theoretical arrival time (`due`) that each call,
    admitted once the clock has reached it, pushes on by its units times
    `60 / per_minute` seconds.

    `due` is kept as a start and a count of units from it, so that evenly
    spaced calls land on exact multiples of the spacing. `recent` holds the
    charges admitted in the last `WINDOW`, in order: a give-back may not pull
    `due` before what the later ones among them have used.
    """

    __slots__ = ("_order", "_recent", "_start", "_units", "per_minute")

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._start = -math.inf
        self._units = 0
        self._recent: deque[_Charge] = deque()
        self._order = itertools.count()

    def due(self) -> float:
        """When the next call may be admitted."""
        return self._at(self._start, self._units)

    def wait(self, now: float) -> float:
        """Seconds until the next call may be admitted (0: now)."""
        wait = self.due() - now
        return wait if wait > _SLACK else 0.0

    def charge(self, amount: int, now: float) -> _Charge:
        if self.due() <= now:  # idle: no credit is kept for the time it was
            self._start, self._units = now, amount
        else:  # admitted at `due`, or a hair before it
            self._units += amount
        self._forget(now)
        charge = _Charge(amount, now, next(self._order))
        self._recent.append(charge)
        return charge

    def settle(self, charge: _Charge, actual: int, now: float) -> bool:
        """Make `charge` cost `actual`: move `due` on, or back, by the
        difference. Whether `due` moved back."""
        difference = actual - charge.amount
        charge.amount = actual
        if difference >= 0:
            self._units += difference
            return False
        before = self.due()
        self._units += difference
        self._forget(now)
        later = 0  # the units of the recent charges admitted after `charge`
        for other in reversed(self._recent):
            if other.order <= charge.order:
                break
            later += other.amount
            if self._at(other.at, later) > self.due():
                self._start, self._units = other.at, later
        return self.due() < before

    def _at(self, start: float, units: int) -> float:
        return start + units * 60 / self.per_minute

    def _forget(self, now: float) -> None:
        recent = self._recent
        while recent and recent[0].at <= now - WINDOW:
            recent.popleft()


@final
class _Cap:
    """A provider's hint for one budget: until `until`, at most `left` more."""

    __slots__ = ("left", "until")

    def __init__(self, left: int, until: float) -> None:
        self.left = left
        self.until = until

    def wait(self, amount: int, now: float) -> float:
        """Seconds until `amount` fits under the cap (0: it fits now)."""
        if now >= self.until or amount <= self.left:
            return 0.0
        return self.until - now

    def take(self, amount: int, now: float) -> None:
        if now < self.until:
            self.left -= amount


def _tightened(
    cap: _Cap | None,
    budget: _Timeline | None,
    remaining: int | None,
    reset: float | None,
    now: float,
    max_pause: float,
) -> _Cap | None:
    """`cap` after a hint that `remaining` are left for `reset` seconds: the
    hint counts only if it is tighter than `budget`'s share over that span
    (any hint is, without a budget), and never loosens a cap still in force."""
    active = cap if cap is not None and now < cap.until else None
    if remaining is None or reset is None or reset <= 0 or max_pause <= 0:
        return active
    if budget is not None and remaining >= budget.per_minute / 60 * max(reset, WINDOW):
        return active
    until = now + min(reset, max_pause)
    if active is None:
        return _Cap(remaining, until)
    active.left = min(active.left, remaining)
    active.until = max(active.until, until)
    return active


def _count(value: object, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"RateLimits({what}=...) needs an int > 0 or None, got {value!r}")
    return value


@final
class RateLimits(CallLayer):
    """Requests and tokens per minute, shared by every model call under an Env.

    Calls go `60 / requests_per_minute` seconds apart, and a call of n tokens
    (estimated, then reconciled with its reported usage) holds the token
    budget for `n * 60 / tokens_per_minute` seconds; a 429 pauses every caller
    for its `retry_after` (at most `max_pause`), and a provider's hint only
    tightens. docs/dataset.md ("Rate limits") has the rules.

    Example: `Env.of(OpenAIChatConfig(model="gpt-4o"), RateLimits(tokens_per_minute=30_000))`
    """

    place: ClassVar[LayerPlace] = "pacing"

    def __init__(
        self,
        requests_per_minute: int | None = None,
        tokens_per_minute: int | None = None,
        *,
        tokenizer: Callable[[ModelRequest], int] | None = None,
        max_pause: float = 60.0,
    ) -> None:
        requests = _count(requests_per_minute, "requests_per_minute")
        tokens = _count(tokens_per_minute, "tokens_per_minute")
        if tokenizer is not None and not callable(tokenizer):
            raise TypeError(
                f"RateLimits(tokenizer=...) needs a callable, got {type(tokenizer).__name__}"
            )
        self.requests_per_minute = requests
        self.tokens_per_minute = tokens
        self.tokenizer = tokenizer
        self.max_pause = finite_seconds(max_pause, "RateLimits(max_pause=...)")
        self._requests = None if requests is None else _Timeline(requests)
        self._tokens = None if tokens is None else _Timeline(tokens)
        self._paused_until = -math.inf
        self._request_cap: _Cap | None = None  # from providers' hints
        self._token_cap: _Cap | None = None
        self._clock: Clock | None = None
        self._mutex = threading.Lock()  # the budgets, across threads; never held over an await
        self._queues: RunVar[_Queue] = RunVar(f"stagefx.RateLimits.{id(self):x}")

    def __repr__(self) -> str:
        return (
            f"RateLimits(requests_per_minute={self.requests_per_minute!r}, "
            f"tokens_per_minute={self.tokens_per_minute!r})"
        )

    def estimate(
        self, request: ModelRequest, configured: Mapping[str, object] = _NOTHING_CONFIGURED
    ) -> int:
        """The tokens `request` is charged before it is sent (see `estimate_tokens`)."""
        return estimate_tokens(request, self.tokenizer, configured)

    def paused_until(self) -> float:
        """The clock time before which no call is sent after a 429 (-inf: none)."""
        return self._paused_until

    # The model-call path ------------------------------------------------------

    async def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
        """Wait for room in the budgets, pass the call on (streamed as it comes),
        and settle the charge with the usage its answer reports."""
        clock = env.clock
        self._check_clock(clock)
        counted = self._tokens is not None or self._token_cap is not None
        # A call costs at least one token.
        tokens = max(self.estimate(request, _options(inner, env)), 1) if counted else 1
        charge = await self._admit(tokens, clock)
        stream = inner.stream(request, env)
        try:
            async for item in stream:
                if isinstance(item, str):
                    yield item
                    continue
                if self._settle(charge, item, clock):
                    self._wake_head()  # tokens came back: the front may fit now
                yield item
                return
        finally:
            await close_iterator(stream)

    async def _admit(self, tokens: int, clock: Clock) -> _Charge | None:
        """Wait in line until admitted (charged); the token charge. A caller
        cancelled before it returns is charged nothing."""
        queue = self._queue()
        waiter = _Waiter(tokens)
        queue.line.append(waiter)
        try:
            while not waiter.admitted:
                if queue.line[0] is not waiter:
                    await waiter.wake.wait()
                    waiter.wake = anyio.Event()
                    continue
                wait = self._let_in(queue, clock)
                if wait is None:  # it was first in line: admitted
                    break
                with anyio.CancelScope() as sleep:
                    queue.head = sleep
                    try:
                        await clock.sleep(max(wait, _LEAST_SLEEP))
                    finally:
                        queue.head = None
        except BaseException:
            self._leave(queue, waiter, clock)
            raise
        return waiter.tokens

    def _let_in(self, queue: _Queue, clock: Clock) -> float | None:
        """Admit callers from the front of the line while they fit; the seconds
        until the front might fit, or None if the front was admitted."""
        line = queue.line
        admitted = False
        with self._mutex:
            now = clock.now()
            wait = self._paused_until - now
            if wait > 0:
                return wait
            requests_cap, tokens_cap = self._request_cap, self._token_cap
            while line:
                waiter = line[0]
                wait = max(
                    0.0 if self._requests is None else self._requests.wait(now),
                    0.0 if self._tokens is None else self._tokens.wait(now),
                    0.0 if requests_cap is None else requests_cap.wait(1, now),
                    0.0 if tokens_cap is None else tokens_cap.wait(waiter.wanted, now),
                )
                if wait > 0:
                    break
                if self._requests is not None:
                    waiter.requests = self._requests.charge(1, now)
                if self._tokens is not None:
                    waiter.tokens = self._tokens.charge(waiter.wanted, now)
                if requests_cap is not None:
                    requests_cap.take(1, now)
                if tokens_cap is not None:
                    tokens_cap.take(waiter.wanted, now)
                waiter.admitted = admitted = True
                line.popleft()
                waiter.wake.set()
        if line:
            line[0].wake.set()  # the next in line is the head now (a no-op if it was)
        return None if admitted else wait

    def _leave(self, queue: _Queue, waiter: _Waiter, clock: Clock) -> None:
        """`waiter` was cancelled: out of the line, or, if it was admitted and
        never sent, its charges back; the line moves on either way."""
        if waiter.admitted:
            gave_back = False
            with self._mutex:
                now = clock.now()
                for budget, charge in (
                    (self._requests, waiter.requests),
                    (self._tokens, waiter.tokens),
                ):
                    if budget is not None and charge is not None:
                        gave_back = budget.settle(charge, 0, now) or gave_back
            if gave_back:
                self._wake_head()
            return
        was_head = queue.line[0] is waiter
        queue.line.remove(waiter)
        if was_head and queue.line:
            queue.line[0].wake.set()

    def _wake_head(self) -> None:
        head = self._queue().head
        if head is not None:
            head.cancel()

    def _settle(self, charge: _Charge | None, answer: object, clock: Clock) -> bool:
        """Reconcile the token charge with the usage `answer` reports and take
        in its hint, or pause everyone after a 429. Whether tokens were given back."""
        with self._mutex:
            now = clock.now()
            if isinstance(answer, ModelOutput):
                if answer.limits is not None:
                    self._tighten(answer.limits, now)
                usage = answer.usage
                if charge is not None and self._tokens is not None and usage is not None:
                    actual = max(usage.input_tokens, 0) + max(usage.output_tokens, 0)
                    # A server's report, capped: no answer charges more than a minute's budget.
                    most = max(charge.amount, self.tokens_per_minute or 0)
                    return self._tokens.settle(charge, min(max(actual, 1), most), now)
            elif isinstance(answer, ModelFailure) and answer.kind == "rate_limited":
                self._pause(answer.retry_after, now)
            return False

    def _tighten(self, hint: RateLimitHint, now: float) -> None:
        """Cap each budget the hint says has less left than the budget would send."""
        self._request_cap = _tightened(
            self._request_cap,
            self._requests,
            _hinted_count(hint.remaining_requests),
            _hinted_seconds(hint.reset_requests),
            now,
            self.max_pause,
        )
        self._token_cap = _tightened(
            self._token_cap,
            self._tokens,
            _hinted_count(hint.remaining_tokens),
            _hinted_seconds(hint.reset_tokens),
            now,
            self.max_pause,
        )

    def _pause(self, retry_after: float | None, now: float) -> None:
        if retry_after is None or math.isnan(retry_after):
            seconds = _NO_RETRY_AFTER
        else:
            seconds = max(retry_after, 0.0)
        self._paused_until = max(self._paused_until, now + min(seconds, self.max_pause))

    def _queue(self) -> _Queue:
        """This event loop's queue of callers."""
        try:
            return self._queues.get()
        except LookupError:
            queue = _Queue()
            self._queues.set(queue)
            return queue

    def _check_clock(self, clock: Clock) -> None:
        known = self._clock
        if known is None:
            self._clock = clock
        elif known is not clock and not (
            isinstance(known, SystemClock) and isinstance(clock, SystemClock)
        ):
            raise ValueError(
                "one RateLimits was used under Envs with different clocks, whose times "
                "cannot be compared: share one clock, or give each clock its own RateLimits"
            )


def _options(inner: ModelPath, env: Env) -> Mapping[str, object]:
    """The options the model is configured with (its output limit among them)."""
    if inner.model is None:
        return _NOTHING_CONFIGURED
    try:
        return inner.model.fingerprint(env)
    except Exception:  # a model that cannot say: the request's own limit, or the default
        return _NOTHING_CONFIGURED


def _hinted_count(value: int | None) -> int | None:
    """A hint's count, unless it is negative (nonsense: ignored)."""
    return None if value is None or value < 0 else value


def _hinted_seconds(value: float | None) -> float | None:
    """A hint's reset, unless it is not finite (nonsense: ignored)."""
    return None if value is None or not math.isfinite(value) else float(value)
