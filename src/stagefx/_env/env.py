"""Env, the reader environment stages run in, and `ctx`, which makes one ambient.

Strict code builds an `Env` and passes `env=` to `attempt`/`execute`; the
spec's style opens `async with ctx.scope(...)` and lets `execute()` find it.
Either way nothing global is touched: the ambient env lives in a context
variable that only the `scope` block sets.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Generator, Iterable, Mapping
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    asynccontextmanager,
    contextmanager,
)
from contextvars import ContextVar
from typing import TypeVar, cast, final

import attrs

from stagefx._core.secrets import redact, scrub
from stagefx._env.clock import Clock, SystemClock
from stagefx._env.events import EventSink
from stagefx._env.tracing import NoopTracer, Tracer, current_span, is_tracing

__all__ = ["Env", "HoldsSecrets", "ambient", "ctx", "resolved"]

T = TypeVar("T")

_logger = logging.getLogger("stagefx")


class HoldsSecrets:
    """A provider holding strings that must never be written anywhere (an API
    key); `GenerativeModel` is one. Logs and cassettes scrub what it names."""

    def secrets(self) -> tuple[str, ...]:
        """The strings to scrub (none by default)."""
        return ()


def _tracing(env: Env) -> bool:
    return is_tracing(env.tracer)


@final
@attrs.frozen(slots=True)
class Env:
    """Everything a running stage may use: providers, a clock, a tracer.

    Providers are looked up by type with `env.get(T)`, the one lookup every
    part of stagefx uses (`env.get(GenerativeModel)`, `env.get(CacheStore)`,
    `env.get(OpenAIResponsesConfig)`); when several match, the one added last
    wins. Roles are explicit: only a subclass of `Clock` becomes the clock and
    only a subclass of `Tracer` the tracer; a model, a cache store and the
    rest are found by their base class. Any other value is only a value,
    whatever methods it has.

    Example: `Env.of(ScriptedModel("hi"), VirtualClock(), RecordingTracer())`
    """

    name: str = "stagefx"
    providers: tuple[object, ...] = ()
    clock: Clock = attrs.field(factory=SystemClock)
    tracer: Tracer = attrs.field(factory=NoopTracer)
    events: EventSink | None = attrs.field(default=None, eq=False, repr=False)
    """Where a streamed run's events go (`Stage.stream`); None when not streamed."""
    tracer_active: bool = attrs.field(
        init=False, eq=False, repr=False, default=attrs.Factory(_tracing, takes_self=True)
    )
    """Whether spans go anywhere (not under `NoopTracer`)."""

    @classmethod
    def of(cls, *providers: object, name: str = "stagefx") -> Env:
        """An Env from providers; a `Clock` or `Tracer` among them takes that role."""
        return cls(name=name).updated(*providers)

    def updated(self, *providers: object, name: str | None = None) -> Env:
        """A copy with more providers (a `Clock` or `Tracer` replaces the current one)."""
        clock, tracer, rest = self.clock, self.tracer, list(self.providers)
        for provider in providers:
            if isinstance(provider, Clock):
                clock = provider
            elif isinstance(provider, Tracer):
                tracer = provider
            else:
                rest.append(provider)
        return Env(
            name=self.name if name is None else name,
            providers=tuple(rest),
            clock=clock,
            tracer=tracer,
            events=self.events,
        )

    def streaming_to(self, events: EventSink | None) -> Env:
        """A copy whose nodes emit their events to `events`."""
        return attrs.evolve(self, events=events)

    def secrets(self) -> tuple[str, ...]:
        """Every string a provider in this Env says must never be written (API keys)."""
        found: list[str] = []
        for provider in self.providers:
            if isinstance(provider, HoldsSecrets):  # nominal, never by shape
                try:
                    held = tuple(provider.secrets())
                except Exception:  # a provider's bug must not stop failures being reported
                    continue
                found.extend(
                    secret
                    for secret in cast("tuple[object, ...]", held)  # the provider's: anything
                    if isinstance(secret, str) and secret
                )
        return tuple(found)

    def get(self, kind: type[T]) -> T | None:
        """The last provider that is an instance of `kind`, if any."""
        for provider in reversed(self.providers):
            if isinstance(provider, kind):
                return provider
        return None


_ambient: ContextVar[Env | None] = ContextVar("stagefx_env", default=None)


def _provided(entered: object) -> Iterable[object]:
    if entered is None:
        return ()
    if isinstance(entered, tuple):
        return cast("tuple[object, ...]", entered)
    return (entered,)


@final
class _Context:
    """The ambient side of stagefx: scopes and structured logging."""

    def current(self) -> Env | None:
        """The Env of the innermost open `scope`, if any."""
        return _ambient.get()

    @asynccontextmanager
    async def scope(
        self,
        name: str,
        *providers: object,
        disposables: Iterable[AbstractAsyncContextManager[object]] = (),
    ) -> AsyncGenerator[Env, None]:
        """Open a scope: enter `disposables` (what they yield becomes providers),
        make the resulting Env ambient, and exit them in reverse order at the end,
        also when the block fails or is cancelled. Scopes nest: an inner scope
        adds to the outer one's providers.

        Example:
            ```python
            config = OpenAIResponsesConfig(model="gpt-4o")
            async with ctx.scope("app", config, disposables=(OpenAI(),)):
                state = await pipeline.execute()
            ```
        """
        parent = _ambient.get()
        env = (parent or Env()).updated(*providers, name=name)
        async with AsyncExitStack() as stack:
            for disposable in disposables:
                entered = await stack.enter_async_context(disposable)
                env = env.updated(*_provided(entered))
            token = _ambient.set(env)
            try:
                yield env
            finally:
                _ambient.reset(token)

    def log_debug(self, message: str, /, **attributes: object) -> None:
        self._log(logging.DEBUG, message, attributes)

    def log_info(self, message: str, /, **attributes: object) -> None:
        self._log(logging.INFO, message, attributes)

    def log_warning(self, message: str, /, **attributes: object) -> None:
        self._log(logging.WARNING, message, attributes)

    def log_error(self, message: str, /, **attributes: object) -> None:
        self._log(logging.ERROR, message, attributes)

    def _log(self, level: int, message: str, attributes: Mapping[str, object]) -> None:
        if not _logger.isEnabledFor(level):
            return
        env = _ambient.get()
        secrets = () if env is None else env.secrets()
        safe = redact(attributes, secrets)
        span = current_span()
        _logger.log(
            level,
            "%s %s",
            scrub(message, secrets),
            " ".join(f"{key}={value!r}" for key, value in safe.items()),
            extra={
                "stagefx_scope": env.name if env is not None else None,
                "stagefx_span": None if span is None else span[0],
                "stagefx_trace": None if span is None else span[1],
                "stagefx_attributes": safe,
            },
        )


_DEFAULT = Env()


@contextmanager
def ambient(env: Env) -> Generator[None, None, None]:
    """Make `env` the ambient Env (what `ctx.current()` gives) for the block only."""
    token = _ambient.set(env)
    try:
        yield
    finally:
        _ambient.reset(token)


def resolved(env: Env | None) -> Env:
    """`env` if given, else the ambient one, else the default Env (system
    clock, no tracer, no providers): what needs a missing provider then fails
    with `MissingEnvironmentError` naming it."""
    if env is not None:
        return env
    ambient = _ambient.get()
    return _DEFAULT if ambient is None else ambient


ctx = _Context()
"""The ambient context: `async with ctx.scope(...)`, `ctx.log_info(...)`."""
