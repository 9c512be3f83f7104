"""`Recorder`: record real model calls once, replay them offline, deterministically.

A Recorder in the Env stands on the one model-call path (it is a `CallLayer`),
so it records any provider at the level of typed requests and answers: the
cassette does not depend on a vendor's wire format, on JSON key order or on
the order concurrent calls arrive in, and it holds no header or key.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import threading
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import ClassVar, Literal, TypeAlias, cast, final

import attrs
import msgspec

from stagefx._codec import (
    JSON,
    CodecError,
    canonical,
    decode_answer_json,
    decode_request,
    encode_answer,
    encode_request,
    pretty,
)
from stagefx._core.conversation import ModelOutput
from stagefx._core.errors import MissingEnvironmentError, StageException
from stagefx._core.iteration import close_iterator
from stagefx._core.request import ModelFailure, ModelRequest
from stagefx._core.secrets import held_secret
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._model.boundary import CallLayer, LayerPlace, ModelPath
from stagefx._model.generative import GenerativeModel, ModelStream, ModelStreamItem

__all__ = ["CASSETTE_VERSION", "Recorder", "RecordMode", "ReplayMissError"]

RecordMode: TypeAlias = Literal["once", "replay", "record", "new"]
"""`once`: replay if the cassette exists, else record; `replay`: never call a
model; `record`: call every time and overwrite; `new`: replay what is
recorded, record what is not."""

CASSETTE_VERSION = 1
_MODES = ("once", "replay", "record", "new")
_DIFF_LINES = 80
_FINGERPRINTS_KEPT = 4096
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


_Key: TypeAlias = tuple[bytes, bytes]
"""A call: its model's fingerprint and its request, each as canonical JSON bytes."""

_Answer: TypeAlias = tuple[bytes, bytes | None]
"""A recorded answer (compact JSON) and, for a streamed call, its text deltas (a JSON list)."""


@attrs.define(slots=True, eq=False)
class _Recorded:
    """One recorded call: the key it is written under, and its answers
    (compact JSON) in recorded order, of which the first `replayed` have been
    taken by runs since the Recorder was made."""

    key: _Key
    answers: list[_Answer]
    replayed: int = 0

    @property
    def left(self) -> int:
        return len(self.answers) - self.replayed

    def take(self) -> _Answer | None:
        if self.replayed == len(self.answers):
            return None
        self.replayed += 1
        return self.answers[self.replayed - 1]

    def absorb(self, other: _Recorded) -> None:
        """Take in the answers of another spelling of this call: those taken
        first, then the others, each in recorded order (this one's first)."""
        self.answers = [
            *self.answers[: self.replayed],
            *other.answers[: other.replayed],
            *self.answers[self.replayed :],
            *other.answers[other.replayed :],
        ]
        self.replayed += other.replayed


class _Call(msgspec.Struct):
    """A call as the cassette holds it, each part left as raw JSON."""

    model: msgspec.Raw
    request: msgspec.Raw
    answer: msgspec.Raw
    deltas: msgspec.Raw = msgspec.Raw()  # empty: not streamed


class _Cassette(msgspec.Struct):
    version: int
    calls: list[_Call]


_READ = msgspec.json.Decoder(_Cassette)
_READ_CALL = msgspec.json.Decoder(_Call)
_REWRITTEN_UP_TO = 256
"""A cassette of up to this many answers is rewritten whole after each
recorded call (it is complete at every moment); a larger one takes new calls
in its journal until they are half as many as it holds, and is then
rewritten with them, so recording a long run costs linear time, not quadratic."""


def _parsed(raw: bytes) -> JSON:
    """The JSON data `raw` holds, or (data msgspec will not build: integers
    of thousands of digits, absurd nesting) its text, to be shown."""
    try:
        value: JSON = msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        return raw.decode("utf-8", "replace")
    return value


@final
class Recorder(CallLayer):
    """Records model calls to a JSON cassette at `path` and replays them.

    Calls match by a canonical form of the request and of the model's
    `fingerprint`, not by order. Each recorded call is written at once; a
    cassette that would hold a secret (the model's key, `secrets`, key-shaped
    strings) is not written. See docs/recording.md.

    Example: `Recorder("tests/cassettes/triage.json", mode="replay")`
    """

    place: ClassVar[LayerPlace] = "recording"  # outside rate limits: a replay is never paced

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
        self._secrets = tuple(secret for secret in secrets if secret)
        exists = self.path.exists()
        self._replays = mode in ("replay", "new") or (mode == "once" and exists)
        self._records = mode in ("record", "new") or (mode == "once" and not exists)
        # Every key a call matches by, to the call. Until checked, a call's key is
        # as read, canonical if the file is as a Recorder writes it; after, a call
        # written by hand is found by its canonical key and with its defaults filled in.
        self._calls: dict[_Key, _Recorded] = _read(self.path) if exists and mode != "record" else {}
        self._written = (
            sum(len(call.answers) for call in self._recorded_in(self._calls))
            if exists and mode != "record"
            else -1
        )
        """Answers the cassette file holds (-1: it is to be overwritten); the rest are journaled."""
        self._journaled = 0
        self._folds = False  # whether its journal is to be folded in when it goes
        self._checked = not self._calls
        self._broken: list[str] = []  # calls whose request does not decode, found when checked
        self._by_request: dict[bytes, list[_Recorded]] | None = None  # for an Env with no model
        self._fingerprints: dict[tuple[int, int], tuple[GenerativeModel, Env, bytes]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, mode={self.mode!r})"

    # The model-call path ------------------------------------------------------

    def model_stream(self, request: ModelRequest, env: Env, inner: ModelPath) -> ModelStream:
        """Replay the recorded answer to `request` (a streamed recording as its
        deltas), or (where the mode allows) pass the call on and record it."""
        model = inner.model
        key = (self._fingerprint(model, env), canonical(encode_request(request)))
        if self._replays:
            with self._lock:
                replayed = self._take(key, by_model=model is not None)
            if replayed is not None:
                answer, deltas = replayed
                streamed = _deltas(deltas) if deltas is not None and env.events is not None else ()
                return _replayed(*streamed, decode_answer_json(answer))
        if not self._records:
            raise self._miss(key)
        if model is None:
            raise MissingEnvironmentError(
                "the Recorder has no recording of this call and no GenerativeModel to "
                "record it from: add the model to the Env, or record the cassette first",
                state=StageState.empty,
            )
        return self._recording(key, model, inner.stream(request, env))

    async def _recording(
        self, key: _Key, model: GenerativeModel, stream: ModelStream
    ) -> ModelStream:
        """`stream` passed on as it comes, and recorded once its answer is in."""
        deltas_seen: list[str] = []
        try:
            async for item in stream:
                if isinstance(item, str):
                    deltas_seen.append(item)
                    yield item
                    continue
                if isinstance(
                    cast(object, item), ModelOutput | ModelFailure
                ):  # else a bug, reported
                    streamed = canonical(cast(JSON, deltas_seen)) if deltas_seen else None
                    self._record(key, (canonical(encode_answer(item)), streamed), model)
                yield item
                return
        finally:
            await close_iterator(stream)

    # Cassette maintenance -----------------------------------------------------

    def unused(self) -> list[Mapping[str, JSON]]:
        """Recorded calls no run has replayed or recorded since this Recorder
        was made: candidates for `prune()`."""
        with self._lock:
            return [_shown(call.key) for call in self._recorded() for _ in range(call.left)]

    def prune(self) -> int:
        """Drop the unused recordings and rewrite the cassette (in `record` or
        `new` mode only: a replay never rewrites it). The number dropped."""
        if self.mode not in ("record", "new"):
            raise ValueError(f"prune() rewrites the cassette: not in {self.mode!r} mode")
        with self._lock:
            calls = self._recorded()
            dropped = sum(call.left for call in calls)
            if dropped:
                _write(self.path, [(call.key, call.answers[: call.replayed]) for call in calls])
                for call in calls:  # written: now drop them here too
                    del call.answers[call.replayed :]
                self._written, self._journaled = sum(call.replayed for call in calls), 0
                self._calls = {key: call for key, call in self._calls.items() if call.answers}
                self._by_request = None
            return dropped

    # Internals ----------------------------------------------------------------

    def _fingerprint(self, model: GenerativeModel | None, env: Env) -> bytes:
        """The model's fingerprint, canonical: asked of the model once per Env
        (it is the model's own code), and remembered for up to 4,096 Envs."""
        if model is None:
            return b"null"
        known = self._fingerprints.get((id(model), id(env)))
        if known is None or known[0] is not model or known[1] is not env:
            # Through JSON and back: tuples become lists, and what is not JSON shows as text.
            loaded: JSON = json.loads(json.dumps(model.fingerprint(env), default=str))
            known = (model, env, canonical(loaded))
            if len(self._fingerprints) >= _FINGERPRINTS_KEPT:  # a stage may make an Env per run
                self._fingerprints.clear()
            self._fingerprints[(id(model), id(env))] = known  # kept alive: the ids stay theirs
        return known[2]

    def _take(self, key: _Key, *, by_model: bool) -> _Answer | None:
        """The first answer to this call no run has taken yet (matched by
        request alone when the Env has no model to fingerprint); under the lock."""
        answer = self._first(key, by_model)
        if answer is None and not self._checked:
            self._check()  # a hand-edited entry may be this call written differently
            answer = self._first(key, by_model)
        return answer

    def _first(self, key: _Key, by_model: bool) -> _Answer | None:
        if by_model:
            call = self._calls.get(key)
            return None if call is None else call.take()
        if self._by_request is None:
            self._by_request = {}
            for (_, request), call in self._calls.items():
                found = self._by_request.setdefault(request, [])
                if call not in found:
                    found.append(call)
        for call in self._by_request.get(key[1], ()):
            answer = call.take()
            if answer is not None:
                return answer
        return None

    def _check(self) -> None:
        """Find every call read from the file by its canonical key (keys
        sorted; whitespace, numbers and strings as the codec writes them) and
        by the canonical key of its request with the defaults it leaves out
        filled in; entries that turn out to be one call become one. A file as a
        Recorder writes it is canonical already: this is for cassettes edited
        by hand. (The form with defaults filled in cannot replace the written
        one: a typed artifact's value does not survive decoding.)"""
        self._checked = True
        index: dict[_Key, _Recorded] = {}
        for call in self._recorded():
            model, request = call.key
            written = (canonical(_parsed(model)), canonical(_parsed(request)))
            try:
                filled = (written[0], canonical(encode_request(decode_request(_parsed(request)))))
            except CodecError as error:
                shown = request.decode("utf-8", "replace")
                shown = shown if len(shown) <= 120 else shown[:117] + "..."
                self._broken.append(f"the recorded call {shown} does not decode: {error}")
                filled = written
            call.key = written
            for same in (index.get(written), index.get(filled)):
                if same is not None and same is not call:
                    same.absorb(call)
                    index = {key: same if each is call else each for key, each in index.items()}
                    call = same
            index[written] = index[filled] = call
        self._calls = index
        self._by_request = None

    def _recorded(self) -> list[_Recorded]:
        """Each recorded call once (several keys may find one), in the order first read."""
        return self._recorded_in(self._calls)

    @staticmethod
    def _recorded_in(calls: dict[_Key, _Recorded]) -> list[_Recorded]:
        return list({id(call): call for call in calls.values()}.values())

    def _record(self, key: _Key, answer: _Answer, model: GenerativeModel) -> None:
        """Keep a recorded answer: a line appended to the journal, or, once the
        journal holds as many as half the cassette, the whole cassette rewritten."""
        with self._lock:
            call = self._calls.get(key)  # after its recorded answers: written with them
            if call is None:
                call = self._calls[key] = _Recorded(key, [])
                self._by_request = None
            call.answers.append(answer)
            call.replayed = len(call.answers)  # recorded by this run: used
            secrets = (*self._secrets, *_secrets_of(model))
            try:
                if self._written < _REWRITTEN_UP_TO or self._journaled >= self._written // 2:
                    self._rewrite(secrets)
                else:
                    self._journal(key, answer, secrets)
            except ValueError:
                call.answers.pop()
                call.replayed -= 1
                if not call.answers:
                    del self._calls[key]
                    self._by_request = None
                raise

    def _rewrite(self, secrets: Iterable[str]) -> None:
        calls = self._recorded()
        _write(self.path, [(call.key, call.answers) for call in calls], secrets)
        self._written = sum(len(call.answers) for call in calls)
        self._journaled = 0

    def _journal(self, key: _Key, answer: _Answer, secrets: Iterable[str]) -> None:
        line = _WRITE.encode(_entry(key, *answer)) + b"\n"
        _refuse_secrets(line.decode("utf-8"), secrets)
        with _journal_of(self.path).open("ab") as journal:
            journal.write(line)
        self._journaled += 1
        if not self._folds:  # folded in when this Recorder goes, or at exit
            weakref.finalize(self, _fold, self.path)
            self._folds = True

    def _miss(self, key: _Key) -> ReplayMissError:
        wanted = _shown(key)
        with self._lock:
            calls = self._recorded()
            candidates = [call.key for call in calls if call.left] or [call.key for call in calls]
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


async def _replayed(*items: ModelStreamItem) -> ModelStream:
    """A recorded answer as a stream: its deltas, then the answer."""
    for item in items:
        yield item


def _deltas(recorded: bytes) -> list[str]:
    """A streamed recording's deltas; what is not a list of strings gives none
    (the answer's text, which the boundary then streams whole, is what counts)."""
    try:
        read: object = msgspec.json.decode(recorded)
    except (msgspec.DecodeError, RecursionError):
        return []
    if isinstance(read, list) and all(isinstance(delta, str) for delta in cast(list[object], read)):
        return cast(list[str], read)
    return []


def _journal_of(path: Path) -> Path:
    """Where calls recorded since the cassette was last written wait, one a line."""
    return path.with_name(f".{path.name}.journal")


def _read(path: Path) -> dict[_Key, _Recorded]:
    """The cassette's calls, then those its journal holds (a torn last line, left
    by a crash mid-write, is skipped). Whitespace goes in one pass over the
    file, so each part is compact JSON, as written (canonical if not hand-edited)."""
    try:
        text = path.read_bytes()
        text.decode("utf-8")  # msgspec leaves the raw parts unchecked
        cassette = _READ.decode(msgspec.json.format(text, indent=-1))
    except OSError as error:
        raise ValueError(f"cassette {path} cannot be read: {error}") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"cassette {path} is not UTF-8: {error}") from error
    except msgspec.DecodeError as error:  # its message says where: `$.calls[3]`
        raise ValueError(f"cassette {path} is not a stagefx cassette: {error}") from error
    except RecursionError as error:
        raise ValueError(f"cassette {path} is nested too deeply") from error
    if cassette.version != CASSETTE_VERSION:
        raise ValueError(
            f"cassette {path} is of version {cassette.version}; "
            f"this stagefx reads version {CASSETTE_VERSION}"
        )
    calls: dict[_Key, _Recorded] = {}
    for read in [*cassette.calls, *_journaled(path)]:
        key = (bytes(read.model), bytes(read.request))
        call = calls.get(key)
        if call is None:
            call = calls[key] = _Recorded(key, [])
        call.answers.append((bytes(read.answer), bytes(read.deltas) or None))
    return calls


def _journaled(path: Path) -> list[_Call]:
    try:
        lines = _journal_of(path).read_bytes().splitlines()
    except FileNotFoundError:
        return []
    except OSError as error:
        raise ValueError(f"the journal of cassette {path} cannot be read: {error}") from error
    calls: list[_Call] = []
    for line in lines:
        try:
            line.decode("utf-8")
            calls.append(_READ_CALL.decode(line))
        except (UnicodeDecodeError, msgspec.DecodeError, RecursionError):
            continue  # a line torn by a crash mid-write: that call was not recorded
    return calls


def _entry(key: _Key, answer: bytes, deltas: bytes | None) -> dict[str, msgspec.Raw]:
    entry = {
        "model": msgspec.Raw(key[0]),
        "request": msgspec.Raw(key[1]),
        "answer": msgspec.Raw(answer),
    }
    if deltas is not None:
        entry["deltas"] = msgspec.Raw(deltas)
    return entry


def _write(
    path: Path, calls: list[tuple[_Key, list[_Answer]]], secrets: Iterable[str] = ()
) -> None:
    """The whole cassette, written atomically; its journal is then folded in."""
    document = {
        "format": "stagefx cassette",
        "version": CASSETTE_VERSION,
        "calls": [
            _entry(key, answer, deltas)
            for key, answers in sorted(calls, key=lambda call: call[0])
            for answer, deltas in answers
        ],
    }
    # Each part is JSON already: the encoder splices it in, then the whole is indented.
    text = msgspec.json.format(_WRITE.encode(document), indent=2).decode("utf-8") + "\n"
    _refuse_secrets(text, secrets)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
    _journal_of(path).unlink(missing_ok=True)


def _fold(path: Path) -> None:
    """Fold a cassette's journal into it (at exit, or when its Recorder goes):
    what was recorded is already safe in the journal, so a failure here loses
    nothing; the next Recorder of this cassette reads the journal too."""
    with contextlib.suppress(Exception):
        if _journal_of(path).exists():
            _write(path, [(call.key, call.answers) for call in _read(path).values()])


def _shown(key: _Key) -> dict[str, JSON]:
    return {"model": _parsed(key[0]), "request": _parsed(key[1])}


def _secrets_of(model: GenerativeModel) -> tuple[str, ...]:
    return tuple(secret for secret in model.secrets() if secret)


def _refuse_secrets(text: str, secrets: Iterable[str]) -> None:
    held = held_secret(text, secrets)
    if held is not None:
        raise ValueError(f"the cassette would hold {held}: not written")


def _nearest(wanted: str, keys: list[_Key]) -> _Key | None:
    best: _Key | None = None
    score = -1.0
    for key in keys:
        matcher = difflib.SequenceMatcher(None, pretty(_shown(key)), wanted)
        if matcher.real_quick_ratio() <= score or matcher.quick_ratio() <= score:
            continue
        ratio = matcher.ratio()
        if ratio > score:
            best, score = key, ratio
    return best
