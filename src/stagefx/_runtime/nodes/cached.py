"""`cached`: memoise a node by its input state, with single flight per event loop.

Entries are keyed by a digest of a canonical encoding of the input state
(usage left out): exact about types (`True`, `1`, `1.0` and two IntEnum
members of equal value are four keys), linear in the size of the state and
never asking user code whether two values are equal, so no value's `__eq__`
or `__hash__` runs and no unhashable value shares a bucket with others. An
artifact is keyed by its value's type and its text, not by its parsed value
(a YAML alias bomb stays 350 bytes). A state that cannot be encoded runs
uncached (the span says `cache: "uncacheable"`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import hashlib
import itertools
import math
import os
import struct
import sys
import threading
import weakref
from collections.abc import Callable, Hashable, ItemsView, Iterable, Mapping
from typing import ClassVar, TypeAlias, cast, final

import anyio
import attrs
import pydantic

from stagefx._core.content import ArtifactContent
from stagefx._core.errors import StageException
from stagefx._core.meta import AttributeValue
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals, with_usage, without_usage
from stagefx._env.cache_store import CacheStore, MemoryCacheStore
from stagefx._env.env import Env
from stagefx._env.events import emit_result
from stagefx._env.tracing import annotate
from stagefx._runtime.equivalence import Staged, assert_equivalent, attempted
from stagefx._runtime.node import Frame, Law, Next, Node, Outcome, Run, SpanSpec, Wait
from stagefx._runtime.user_code import failure, require_count

__all__ = ["Cached", "check_cached_determinism", "state_key"]

MAX_KEY_DEPTH = 100
"""How deeply nested a state's values may be and still be cached."""


class _Uncacheable(Exception):
    """A value the encoding cannot make exact: the stage runs uncached."""


# --- identities: for values equal only to themselves, and for unnamed classes -----------

_process = os.urandom(16)  # identity numbers mean nothing in another process
_numbers = itertools.count()
_identities: dict[int, tuple[weakref.ref[object], int]] = {}
_identities_lock = threading.Lock()


def _new_process() -> None:
    """After a fork: the child's numbers must not meet the parent's in a shared store."""
    global _process, _identities_lock
    _process = os.urandom(16)
    _identities_lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_new_process)


def _identity(value: object) -> bytes:
    """A number never given to another object of this process, while `value` lives."""
    address = id(value)
    with _identities_lock:
        known = _identities.get(address)
        if known is not None and known[0]() is value:
            number = known[1]
        else:
            number = next(_numbers)
            try:
                reference = weakref.ref(value, _forgetting(address, number))
            except TypeError as error:
                raise _Uncacheable(f"{type(value).__name__} has no weak reference") from error
            _identities[address] = (reference, number)
    return _process + number.to_bytes(8, "big")


def _forgetting(address: int, number: int) -> Callable[[weakref.ref[object]], None]:
    def forget(_: weakref.ref[object]) -> None:
        known = _identities.get(address)
        if known is not None and known[1] == number:
            _identities.pop(address, None)

    return forget


def _global_name(value: object) -> bytes | None:
    """`module:qualname` if that name finds `value` itself, else None."""
    module = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        return None
    found: object = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    if found is not value:
        return None
    return f"{module}:{qualname}".encode()


# --- per type: how its instances are encoded ------------------------------------------------

Encoder: TypeAlias = Callable[[object, list[bytes], int], None]

_plans: weakref.WeakKeyDictionary[type, tuple[bytes, Encoder]] = weakref.WeakKeyDictionary()


def _sized(tag: bytes, data: bytes) -> bytes:
    return tag + len(data).to_bytes(8, "big") + data


def _type_tag(kind: type) -> bytes:
    plan = _plans.get(kind)
    if plan is None:
        plan = _plan(kind)
    return plan[0]


def _name_of_type(kind: type) -> bytes:
    named = _global_name(kind)
    if named is not None:
        return _sized(b"T", named)
    # A class no name finds (defined in a function): its identity tells it apart.
    return _sized(b"t", f"{kind.__module__}:{kind.__qualname__}".encode() + _identity(kind))


def _plan(kind: type) -> tuple[bytes, Encoder]:
    tag = _name_of_type(kind)
    encoder = _encoder_for(kind, tag)
    plan = (tag, encoder)
    _plans[kind] = plan
    return plan


def _encoder_for(kind: type[object], tag: bytes) -> Encoder:
    if kind is ArtifactContent:
        return _encode_artifact
    if issubclass(kind, enum.Enum):
        return _with_tag(b"E" + tag, _encode_member)
    if kind.__eq__ is object.__eq__:
        return _encode_identity
    if attrs.has(kind):
        fields = tuple((field.name, field.eq_key) for field in attrs.fields(kind) if field.eq)
        return _with_tag(b"O" + tag, _fields_encoder(fields))
    if dataclasses.is_dataclass(kind):
        compared = tuple((field.name, None) for field in dataclasses.fields(kind) if field.compare)
        return _with_tag(b"O" + tag, _fields_encoder(compared))
    if issubclass(kind, pydantic.BaseModel):
        return _with_tag(b"P" + tag, _encode_pydantic)
    for base, encode in _BUILTIN_BASES:
        if issubclass(kind, base):
            return _with_tag(b"S" + tag, _subclass_encoder(encode))
    return _with_tag(b"R" + tag, _encode_reduced)


def _with_tag(tag: bytes, encode: Encoder) -> Encoder:
    def tagged(value: object, out: list[bytes], depth: int) -> None:
        out.append(tag)
        encode(value, out, depth)

    return tagged


def _fields_encoder(fields: tuple[tuple[str, Callable[[object], object] | None], ...]) -> Encoder:
    def encode(value: object, out: list[bytes], depth: int) -> None:
        for name, eq_key in fields:
            item = getattr(value, name)
            _encode(item if eq_key is None else eq_key(item), out, depth)

    return encode


def _encode_member(value: object, out: list[bytes], depth: int) -> None:
    assert isinstance(value, enum.Enum)
    _encode(value.value, out, depth)


def _encode_pydantic(value: object, out: list[bytes], depth: int) -> None:
    assert isinstance(value, pydantic.BaseModel)
    _encode(value.__dict__, out, depth)
    _encode(value.__pydantic_extra__, out, depth)
    _encode(value.__pydantic_private__, out, depth)


def _subclass_encoder(encode_base: Encoder) -> Encoder:
    def encode(value: object, out: list[bytes], depth: int) -> None:
        encode_base(value, out, depth)
        _encode(_instance_state(value), out, depth)

    return encode


def _instance_state(value: object) -> dict[str, object]:
    state = dict(getattr(value, "__dict__", None) or {})
    for kind in type(value).__mro__:
        slots = kind.__dict__.get("__slots__", ())
        for slot in (slots,) if isinstance(slots, str) else slots:
            if slot not in ("__dict__", "__weakref__") and hasattr(value, slot):
                state[f"{kind.__qualname__}.{slot}"] = getattr(value, slot)
    return state


def _encode_identity(value: object, out: list[bytes], depth: int) -> None:
    named = _global_name(value)  # a module-level function, say: the same in every process
    out.append(_sized(b"G", named) if named is not None else b"I" + _identity(value))


def _encode_reduced(value: object, out: list[bytes], depth: int) -> None:
    """A value with its own `__eq__` and no known shape: by what pickling would keep."""
    try:
        # typeshed says `str | tuple`; a class's own __reduce_ex__ may return anything.
        reduced = cast(object, value.__reduce_ex__(4))
    except Exception as error:
        raise _Uncacheable(f"{type(value).__name__} cannot be reduced") from error
    if isinstance(reduced, str):  # a global (a builtin function, say): by its name
        named = _global_name(value)
        if named is None:
            raise _Uncacheable(f"{type(value).__name__} reduces to a name that does not find it")
        out.append(_sized(b"G", named))
        return
    if not isinstance(reduced, tuple):
        raise _Uncacheable(f"{type(value).__name__} does not reduce to a tuple")
    parts = list(cast("tuple[object, ...]", reduced))
    for index in (3, 4):  # list items and dict items come as iterators
        if len(parts) > index and parts[index] is not None:
            parts[index] = list(cast("Iterable[object]", parts[index]))
    _encode(tuple(parts), out, depth)


def _encode_artifact(value: object, out: list[bytes], depth: int) -> None:
    assert isinstance(value, ArtifactContent)
    # The text, not the parsed value: what the model said, in the type it was parsed to.
    out.append(b"A" + _type_tag(type(value.value)))
    _encode_str(value.text, out, depth)


# --- builtins ----------------------------------------------------------------------------


def _encode_none(value: object, out: list[bytes], depth: int) -> None:
    out.append(b"N")


def _encode_bool(value: object, out: list[bytes], depth: int) -> None:
    out.append(b"1" if value else b"0")


def _encode_int(value: object, out: list[bytes], depth: int) -> None:
    number = int.__index__(value)  # type: ignore[arg-type]  # an int (or a subclass)
    out.append(_sized(b"i", number.to_bytes((number.bit_length() + 8) // 8, "big", signed=True)))


def _encode_float(value: object, out: list[bytes], depth: int) -> None:
    number = float.__float__(value)  # type: ignore[arg-type]  # a float (or a subclass)
    out.append(b"f" + (b"nan" if math.isnan(number) else struct.pack(">d", number)))


def _encode_complex(value: object, out: list[bytes], depth: int) -> None:
    number = complex.__complex__(value)  # type: ignore[arg-type]  # a complex (or a subclass)
    out.append(b"c")
    _encode_float(number.real, out, depth)
    _encode_float(number.imag, out, depth)


def _encode_str(value: object, out: list[bytes], depth: int) -> None:
    out.append(_sized(b"s", str.encode(value, "utf-8", "surrogatepass")))  # type: ignore[arg-type]  # a str


def _encode_bytes(value: object, out: list[bytes], depth: int) -> None:
    out.append(_sized(b"b", bytes(memoryview(value))))  # type: ignore[arg-type]  # bytes-like


def _sequence_encoder(tag: bytes, base: type[tuple[object, ...]] | type[list[object]]) -> Encoder:
    def encode(value: object, out: list[bytes], depth: int) -> None:
        items = tuple(base.__iter__(value))  # type: ignore[arg-type]  # the base's items
        out.append(tag + len(items).to_bytes(8, "big"))
        for item in items:
            _encode(item, out, depth)

    return encode


def _digest_of(items: list[object], depth: int) -> bytes:
    part: list[bytes] = []
    for item in items:
        _encode(item, part, depth)
    return hashlib.blake2b(b"".join(part), digest_size=32).digest()


def _mapping_encoder(tag: bytes) -> Encoder:
    def encode(value: object, out: list[bytes], depth: int) -> None:
        pairs = cast("ItemsView[object, object]", dict.items(value))  # type: ignore[arg-type]  # a dict
        out.append(tag + len(pairs).to_bytes(8, "big"))
        out.extend(sorted(_digest_of([key, item], depth) for key, item in pairs))

    return encode


def _set_encoder(tag: bytes, base: type[set[object]] | type[frozenset[object]]) -> Encoder:
    def encode(value: object, out: list[bytes], depth: int) -> None:
        items = tuple(base.__iter__(value))  # type: ignore[arg-type]  # the base's items
        out.append(tag + len(items).to_bytes(8, "big"))
        out.extend(sorted(_digest_of([item], depth) for item in items))

    return encode


_EXACT: dict[type, Encoder] = {
    type(None): _encode_none,
    bool: _encode_bool,
    int: _encode_int,
    float: _encode_float,
    complex: _encode_complex,
    str: _encode_str,
    bytes: _encode_bytes,
    bytearray: _with_tag(b"y", _encode_bytes),
    tuple: _sequence_encoder(b"(", tuple),
    list: _sequence_encoder(b"[", list),
    dict: _mapping_encoder(b"{"),
    set: _set_encoder(b"<", set),
    frozenset: _set_encoder(b">", frozenset),
}

_BUILTIN_BASES: tuple[tuple[type, Encoder], ...] = (
    (bool, _encode_bool),
    (int, _encode_int),
    (float, _encode_float),
    (complex, _encode_complex),
    (str, _encode_str),
    (bytes, _encode_bytes),
    (bytearray, _encode_bytes),
    (tuple, _EXACT[tuple]),
    (list, _EXACT[list]),
    (dict, _EXACT[dict]),
    (frozenset, _EXACT[frozenset]),
    (set, _EXACT[set]),
)


def _encode(value: object, out: list[bytes], depth: int) -> None:
    kind = type(value)
    exact = _EXACT.get(kind)
    if exact is not None:
        if depth > MAX_KEY_DEPTH:
            raise _Uncacheable(f"values nested more than {MAX_KEY_DEPTH} deep")
        exact(value, out, depth + 1)
        return
    if isinstance(value, type):
        out.append(b"Y" + _type_tag(value))
        return
    if depth > MAX_KEY_DEPTH:
        raise _Uncacheable(f"values nested more than {MAX_KEY_DEPTH} deep")
    plan = _plans.get(kind)
    if plan is None:
        plan = _plan(kind)
    plan[1](value, out, depth + 1)


def state_key(state: StageState) -> bytes | None:
    """The digest of `state`'s canonical encoding, or None if it has none.

    Two states get one digest only if they hold the same values of the same
    exact types (a value compared by identity: the same object).
    """
    out: list[bytes] = [b"stagefx-cache-1"]
    try:
        _encode(state, out, 0)
    except Exception:  # _Uncacheable, RecursionError, a property that raises: no key
        return None
    return hashlib.blake2b(b"".join(out), digest_size=32).digest()


# --- the node --------------------------------------------------------------------------------


@attrs.define(slots=True)
class _Flight:
    done: anyio.Event = attrs.field(factory=anyio.Event)
    outcome: Outcome | None = None


Flights: TypeAlias = dict[Hashable, _Flight]


def _running_loop() -> object:
    """The event loop this task runs on (an `anyio.Event` belongs to one)."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: anyio's other backend
        import trio

        return trio.lowlevel.current_trio_token()


# `value` is whatever a caller passed; the `Attribute` tells attrs the field's type.
def _check_expiration(_: object, __: attrs.Attribute[float | None], value: object) -> None:
    if value is not None and (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"cached(expiration=...) needs None or seconds > 0, got {value!r}")


def _check_limit(_: object, __: object, value: int | None) -> None:
    if value is not None:
        require_count(value, "cached(limit=...)", 1)


def _new_loops() -> weakref.WeakKeyDictionary[object, Flights]:
    # `factory=weakref.WeakKeyDictionary` would leave its item types unknown.
    return weakref.WeakKeyDictionary()


def _own(node: Cached) -> MemoryCacheStore:
    # As in draive, `limit=None` holds one entry (haiway's cache default).
    return MemoryCacheStore(1 if node.limit is None else node.limit)


async def check_cached_determinism(stage: Staged, states: list[StageState], env: Env) -> None:
    """`stage.cached()` gives what `stage` gives, for every state, run twice over."""
    memo = Cached(stage.node, None, None, None)
    for state in [*states, *states]:
        assert_equivalent(
            "cached equivalence",
            await attempted(memo, state, env),
            await attempted(stage.node, state, env),
        )


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Cached(Node):
    """Remember `child`'s successful outputs by input state, each for
    `expiration` seconds on the Env's clock, in the Env's `CacheStore` if it has
    one, else in this node's own memory (at most `limit` entries, least
    recently used go first). `key` names the entries in a shared store
    (default: this node). Concurrent runs on one event loop with an equal
    input share one run; failures are not kept."""

    kind: ClassVar[str] = "cached"
    laws: ClassVar[tuple[Law[...], ...]] = (Law("cached determinism", check_cached_determinism),)

    child: Node
    limit: int | None = attrs.field(validator=_check_limit)
    expiration: float | None = attrs.field(validator=_check_expiration)
    key: str | None
    own: MemoryCacheStore = attrs.field(init=False, default=attrs.Factory(_own, takes_self=True))
    loops: weakref.WeakKeyDictionary[object, Flights] = attrs.field(init=False, factory=_new_loops)
    loops_lock: threading.Lock = attrs.field(init=False, factory=threading.Lock)

    def children(self) -> tuple[Node, ...]:
        return (self.child,)

    def details(self) -> Mapping[str, AttributeValue]:
        details: dict[str, AttributeValue] = {}
        if self.limit is not None:
            details["limit"] = self.limit
        if self.expiration is not None:
            details["expiration"] = self.expiration
        if self.key is not None:
            details["key"] = self.key
        return details

    def span(self) -> SpanSpec:
        return ("cached", None)

    def start(self, state: StageState, env: Env) -> Next:
        # Usage is no input: a run after a retry must still find its entry.
        digest = state_key(without_usage(state))
        if digest is None:
            annotate("cache", "uncacheable")
            return Run(self.child, state)
        return Wait(self._looked_up(state, env, (self if self.key is None else self.key, digest)))

    def flights(self) -> Flights:
        """The runs in flight on the running event loop, by key."""
        loop = _running_loop()
        with self.loops_lock:
            flights = self.loops.get(loop)
            if flights is None:
                flights = self.loops[loop] = {}
        return flights

    async def _looked_up(self, state: StageState, env: Env, key: tuple[object, bytes]) -> Next:
        provided = env.get(CacheStore)
        store = self.own if provided is None else provided  # not `or`: an empty store is falsy
        usage = state.get(UsageTotals, UsageTotals())
        flights = self.flights()
        while True:
            try:
                kept = await store.load(key, env.clock.now())
            except Exception as error:
                return failure(error, state)
            if kept is not None:
                annotate("cache", "hit")
                emit_result(env.events, kept)
                return with_usage(kept, usage)  # a hit spends nothing
            flight = flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            if flight.outcome is not None:
                annotate("cache", "shared")
                shared = flight.outcome  # the leader's run: its spend is the leader's to count
                if isinstance(shared, StageException):
                    return shared
                emit_result(env.events, shared)
                return with_usage(shared, usage)
            # The leading run was cancelled: try again, perhaps as the leader.
        flight = flights[key] = _Flight()
        annotate("cache", "miss")
        return Run(self.child, state, _CachedFrame(self, key, flight, flights, store, env))


@final
class _CachedFrame(Frame):
    __slots__ = ("env", "flight", "flights", "key", "node", "store")

    def __init__(
        self,
        node: Cached,
        key: Hashable,
        flight: _Flight,
        flights: Flights,
        store: CacheStore,
        env: Env,
    ) -> None:
        self.node = node
        self.key = key
        self.flight = flight
        self.flights = flights
        self.store = store
        self.env = env

    def resume(self, outcome: Outcome) -> Next:
        return Wait(self._keep(outcome))

    async def _keep(self, outcome: Outcome) -> Next:
        try:
            self.flight.outcome = outcome
            if not isinstance(outcome, StageException):
                expiration = self.node.expiration
                now = self.env.clock.now()
                expires = math.inf if expiration is None else now + expiration
                try:
                    await self.store.store(self.key, outcome, expires)
                except Exception as error:  # the result is good; only keeping it failed
                    annotate("cache_store_error", type(error).__name__)
            return outcome
        finally:
            self._end_flight()

    async def abort(self, error: BaseException) -> Outcome | None:
        self._end_flight()
        return None

    def _end_flight(self) -> None:
        if self.flights.get(self.key) is self.flight:
            del self.flights[self.key]
        self.flight.done.set()
