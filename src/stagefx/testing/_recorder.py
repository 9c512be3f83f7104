"""`Recorder`: record real model calls once, replay them offline, deterministically.

A Recorder in the Env stands on the one model-call path (it is a `CallLayer`),
so it records any provider at the level of typed requests and answers: the
cassette does not depend on a vendor's wire format, on JSON key order or on
the order concurrent calls arrive in, and it holds no header or key.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import threading
from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar, Literal, TypeAlias, final

import attrs
import msgspec

from stagefx._codec import (
    JSON,
    CodecError,
    RequestEncoder,
    canonical,
    decode_answer,
    decode_request,
    encode_answer,
    encode_request,
    pretty,
)
from stagefx._conversation import ModelOutput
from stagefx._env import Env
from stagefx._errors import MissingEnvironmentError, StageException
from stagefx._model import GenerativeModel, ModelFailure, ModelRequest
from stagefx._model_call import CallLayer
from stagefx._state import StageState

__all__ = ["CASSETTE_VERSION", "Recorder", "RecordMode", "ReplayMissError"]

RecordMode: TypeAlias = Literal["once", "replay", "record", "new"]
"""`once`: replay if the cassette exists, else record; `replay`: never call a
model; `record`: call every time and overwrite; `new`: replay what is
recorded, record what is not."""

CASSETTE_VERSION = 1
_MODES = ("once", "replay", "record", "new")
_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|Bearer\s+[A-Za-z0-9._~+/=\-]{8,})")
_SECRET_NAMES = re.compile(r"(API_?KEY|TOKEN|SECRET|PASSWORD)", re.IGNORECASE)
_DIFF_LINES = 80
_WRITE = msgspec.json.Encoder(order="sorted")


class ReplayMissError(StageException):
    """A model call has no recording and the `Recorder`'s mode forbids calling
    the model. `nearest` is the closest recorded call (None in an empty
    cassette) and the message shows the difference as a diff."""

    def __init__(
        self,
        message: str,
        *,
        state: StageState,
        stage_path: tuple[str, ...] = (),
        nearest: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message, state=state, stage_path=stage_path)
        self.nearest = nearest


@attrs.define(slots=True, eq=False)
class _Entry:
    """One recorded call, its parts kept as the compact JSON bytes they were
    read or recorded as; `key` is the call's canonical form, what requests
    match by."""

    model: bytes
    request: bytes
    answer: bytes
    used: bool = False
    canonical: bool = True  # False: read from the file, not yet checked to be canonical

    @property
    def key(self) -> tuple[bytes, bytes]:
        return (self.model, self.request)


class _Call(msgspec.Struct):
    """A call as the cassette holds it, each part left as raw JSON."""

    model: msgspec.Raw
    request: msgspec.Raw
    answer: msgspec.Raw


class _Cassette(msgspec.Struct):
    version: int
    calls: list[_Call]


_READ = msgspec.json.Decoder(_Cassette)


def _compact(raw: msgspec.Raw) -> bytes:
    """`raw` without whitespace: canonical if the file's keys are sorted, as written."""
    return msgspec.json.format(raw, indent=-1)


def _parsed(raw: bytes) -> JSON:
    value: JSON = msgspec.json.decode(raw)
    return value


@final
class Recorder(CallLayer):
    """Records model calls to a JSON cassette at `path` and replays them.

    Put it in the Env beside the model: `ctx.scope("test", config, recorder,
    disposables=(OpenAI(),))`. Calls match by a canonical form of the request
    and of the model's `fingerprint` (API, model name, options), not by order;
    identical calls replay in the order they were recorded. The cassette is
    rewritten (atomically) after each recorded call, never by a replay.
    `secrets` adds strings that must never be written; the model's own
    `secrets()`, API-key-shaped strings and the values of environment
    variables named like keys are refused too.

    Example: `Recorder("tests/cassettes/triage.json", mode="replay")`
    """

    depth: ClassVar[int] = 0  # outermost: a replayed call is never paced or limited

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        mode: RecordMode = "once",
        secrets: Iterable[str] = (),
    ) -> None:
        if mode not in _MODES:
            raise ValueError(f"Recorder mode must be one of {', '.join(_MODES)}, got {mode!r}")
        self.path = Path(path)
        self.mode: RecordMode = mode
        self._secrets = tuple(secret for secret in secrets if isinstance(secret, str) and secret)
        exists = self.path.exists()
        self._replays = mode in ("replay", "new") or (mode == "once" and exists)
        self._records = mode in ("record", "new") or (mode == "once" and not exists)
        self._entries: list[_Entry] = self._load() if exists and mode != "record" else []
        self._checked = False  # whether every entry read from the file is known canonical
        self._broken: list[str] = []  # entries whose request does not decode, found when checked
        self._waiting: dict[tuple[bytes, bytes], deque[_Entry]] = {}  # by key, recorded order
        self._waiting_by_request: dict[bytes, deque[_Entry]] | None = None  # made when needed
        self._index()
        self._encode = RequestEncoder()
        self._fingerprints: dict[tuple[int, int], tuple[GenerativeModel, Env, bytes]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, mode={self.mode!r})"

    # The model-call path ------------------------------------------------------

    async def call(
        self, request: ModelRequest, env: Env, model: GenerativeModel | None
    ) -> ModelOutput | ModelFailure:
        """Replay the recorded answer to `request`, or (where the mode allows)
        ask `model` and record its answer."""
        request_key = canonical(self._encode(request))
        model_key = self._fingerprint(model, env)
        if self._replays:
            entry = self._take(model_key, request_key, by_model=model is not None)
            if entry is not None:
                return decode_answer(_parsed(entry.answer))
        if not self._records:
            raise self._miss(model_key, request_key)
        if model is None:
            raise MissingEnvironmentError(
                "the Recorder has no recording of this call and no GenerativeModel to "
                "record it from: add the model to the Env, or record the cassette first",
                state=StageState.empty,
            )
        answer = await model.generate(request, env)
        if isinstance(answer, ModelOutput | ModelFailure):
            recorded = _Entry(model_key, request_key, canonical(encode_answer(answer)), used=True)
            self._record(recorded, model)
        return answer

    # Cassette maintenance -----------------------------------------------------

    def unused(self) -> list[Mapping[str, JSON]]:
        """Recorded calls no run has replayed or recorded since this Recorder
        was made: candidates for `prune()`."""
        with self._lock:
            return [_shown(entry) for entry in self._entries if not entry.used]

    def prune(self) -> int:
        """Drop the unused recordings and rewrite the cassette (in `record` or
        `new` mode only: a replay never rewrites it). The number dropped."""
        if self.mode not in ("record", "new"):
            raise ValueError(f"prune() rewrites the cassette: not in {self.mode!r} mode")
        with self._lock:
            kept = [entry for entry in self._entries if entry.used]
            dropped = len(self._entries) - len(kept)
            if dropped:
                self._entries = kept
                self._write((), ())
            return dropped

    # Internals ----------------------------------------------------------------

    def _fingerprint(self, model: GenerativeModel | None, env: Env) -> bytes:
        """The model's fingerprint in this Env, canonical, computed once per (model, Env)."""
        if model is None:
            return b"null"
        known = self._fingerprints.get((id(model), id(env)))
        if known is not None and known[0] is model and known[1] is env:
            return known[2]
        # Through JSON and back: tuples become lists, and what is not JSON shows as text.
        loaded: JSON = json.loads(json.dumps(model.fingerprint(env), default=str))
        key = canonical(loaded)
        self._fingerprints[(id(model), id(env))] = (model, env, key)  # kept alive: ids stay
        return key

    def _take(self, model_key: bytes, request_key: bytes, *, by_model: bool) -> _Entry | None:
        """The first unreplayed recording of this call (by request alone when
        the Env has no model to fingerprint)."""
        with self._lock:
            entry = self._first(model_key, request_key, by_model)
            if entry is None and not self._checked:
                self._check()  # a hand-edited entry may be this call written differently
                entry = self._first(model_key, request_key, by_model)
            return entry

    def _first(self, model_key: bytes, request_key: bytes, by_model: bool) -> _Entry | None:
        if by_model:
            queue = self._waiting.get((model_key, request_key))
        else:
            if self._waiting_by_request is None:
                self._waiting_by_request = {}
                for entry in self._entries:
                    self._waiting_by_request.setdefault(entry.request, deque()).append(entry)
            queue = self._waiting_by_request.get(request_key)
        while queue:
            entry = queue.popleft()
            if not entry.used:
                entry.used = True
                return entry
        return None

    def _index(self) -> None:
        self._waiting = {}
        self._waiting_by_request = None
        for entry in self._entries:
            if not entry.used:
                self._waiting.setdefault(entry.key, deque()).append(entry)

    def _check(self) -> None:
        """Bring every entry read from the file to its canonical form (keys
        sorted, numbers and strings as the codec writes them, defaults filled
        in) and index them again. A file this Recorder wrote is canonical
        already; this is for cassettes edited by hand."""
        self._checked = True
        for position, entry in enumerate(self._entries):
            if entry.canonical:
                continue
            entry.canonical = True
            entry.model = canonical(_parsed(entry.model))
            try:
                entry.request = canonical(encode_request(decode_request(_parsed(entry.request))))
            except CodecError as error:
                self._broken.append(f"call {position} of the cassette does not decode: {error}")
        self._index()

    def _record(self, entry: _Entry, model: GenerativeModel) -> None:
        with self._lock:
            self._entries.append(entry)
            try:
                self._write(_secrets_of(model), self._secrets)
            except ValueError:
                self._entries.remove(entry)
                raise

    def _write(self, *secret_groups: Iterable[str]) -> None:
        calls = sorted(self._entries, key=lambda entry: entry.key)  # stable: equal keys keep order
        document = {
            "format": "stagefx cassette",
            "version": CASSETTE_VERSION,
            "calls": [
                {
                    "model": msgspec.Raw(entry.model),
                    "request": msgspec.Raw(entry.request),
                    "answer": msgspec.Raw(entry.answer),
                }
                for entry in calls
            ],
        }
        # Each part is JSON already: the encoder splices it in, then the whole is indented.
        text = msgspec.json.format(_WRITE.encode(document), indent=2).decode("utf-8") + "\n"
        _refuse_secrets(text, (*self._secrets, *(s for group in secret_groups for s in group)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.path)

    def _load(self) -> list[_Entry]:
        try:
            cassette = _READ.decode(self.path.read_bytes())
        except OSError as error:
            raise ValueError(f"cassette {self.path} cannot be read: {error}") from error
        except msgspec.DecodeError as error:  # its message says where: `$.calls[3]`
            raise ValueError(f"cassette {self.path} is not a stagefx cassette: {error}") from error
        if cassette.version != CASSETTE_VERSION:
            raise ValueError(
                f"cassette {self.path} is of version {cassette.version}; "
                f"this stagefx reads version {CASSETTE_VERSION}"
            )
        return [
            _Entry(
                _compact(call.model), _compact(call.request), bytes(call.answer), canonical=False
            )
            for call in cassette.calls
        ]

    def _miss(self, model_key: bytes, request_key: bytes) -> ReplayMissError:
        wanted: dict[str, JSON] = {"model": _parsed(model_key), "request": _parsed(request_key)}
        with self._lock:
            candidates = [entry for entry in self._entries if not entry.used] or self._entries
            nearest = _nearest(pretty(wanted), candidates)
            broken = "".join(f"\n(and {problem})" for problem in self._broken)
        if nearest is None:
            return ReplayMissError(
                f"no recording in {self.path} (mode {self.mode!r}) and the cassette is empty: "
                "record it first (mode 'once' or 'new')" + broken,
                state=StageState.empty,
            )
        recorded = _shown(nearest)
        diff = list(
            difflib.unified_diff(
                pretty(recorded).splitlines(),
                pretty(wanted).splitlines(),
                "nearest recorded call",
                "this call",
                lineterm="",
            )
        )
        if len(diff) > _DIFF_LINES:
            diff = [*diff[:_DIFF_LINES], f"... {len(diff) - _DIFF_LINES} more lines"]
        return ReplayMissError(
            f"no recording in {self.path} matches this model call (mode {self.mode!r}); "
            "the nearest recorded call differs:\n" + "\n".join(diff) + broken,
            state=StageState.empty,
            nearest=recorded,
        )


def _shown(entry: _Entry) -> dict[str, JSON]:
    return {"model": _parsed(entry.model), "request": _parsed(entry.request)}


def _secrets_of(model: GenerativeModel) -> tuple[str, ...]:
    return tuple(secret for secret in model.secrets() if secret)


def _refuse_secrets(text: str, secrets: Iterable[str]) -> None:
    named = [
        (name, value)
        for name, value in os.environ.items()
        if _SECRET_NAMES.search(name) and len(value) >= 8
    ]
    for secret in secrets:
        if secret in text:
            raise ValueError("the cassette would hold a configured secret: not written")
    for name, value in named:
        if value in text:
            raise ValueError(f"the cassette would hold the value of ${name}: not written")
    if _KEY_SHAPES.search(text):
        raise ValueError("the cassette would hold an API-key-shaped string: not written")


def _nearest(wanted: str, entries: list[_Entry]) -> _Entry | None:
    best: _Entry | None = None
    score = -1.0
    for entry in entries:
        matcher = difflib.SequenceMatcher(None, pretty(_shown(entry)), wanted)
        if matcher.real_quick_ratio() <= score or matcher.quick_ratio() <= score:
            continue
        ratio = matcher.ratio()
        if ratio > score:
            best, score = entry, ratio
    return best
