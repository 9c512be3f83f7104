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

from stagefx._codec import JSON, decode_answer, encode_answer, encode_request
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


@attrs.define(slots=True)
class _Entry:
    model: JSON
    request: JSON
    answer: JSON
    key: str
    used: bool = False


def _canonical(model: JSON, request: JSON) -> str:
    return json.dumps(
        {"model": model, "request": request},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )


def _pretty(value: JSON) -> str:
    return json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)


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
        self._waiting: dict[str, deque[_Entry]] = {}  # by canonical call, in recorded order
        for entry in self._entries:
            self._waiting.setdefault(entry.key, deque()).append(entry)
        self._waiting_by_request: dict[str, deque[_Entry]] | None = None  # made when needed
        self._fingerprints: dict[tuple[int, int], tuple[GenerativeModel, Env, JSON]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Recorder({str(self.path)!r}, mode={self.mode!r})"

    # The model-call path ------------------------------------------------------

    async def call(
        self, request: ModelRequest, env: Env, model: GenerativeModel | None
    ) -> ModelOutput | ModelFailure:
        """Replay the recorded answer to `request`, or (where the mode allows)
        ask `model` and record its answer."""
        encoded = encode_request(request)
        fingerprint = self._fingerprint(model, env)
        key = _canonical(fingerprint, encoded)
        if self._replays:
            entry = self._take(key if model is not None else _canonical(None, encoded), model)
            if entry is not None:
                return decode_answer(entry.answer)
        if not self._records:
            raise self._miss(fingerprint, encoded)
        if model is None:
            raise MissingEnvironmentError(
                "the Recorder has no recording of this call and no GenerativeModel to "
                "record it from: add the model to the Env, or record the cassette first",
                state=StageState.empty,
            )
        answer = await model.generate(request, env)
        if isinstance(answer, ModelOutput | ModelFailure):
            self._record(_Entry(fingerprint, encoded, encode_answer(answer), key, used=True), model)
        return answer

    # Cassette maintenance -----------------------------------------------------

    def unused(self) -> list[Mapping[str, JSON]]:
        """Recorded calls no run has replayed or recorded since this Recorder
        was made: candidates for `prune()`."""
        with self._lock:
            return [
                {"model": entry.model, "request": entry.request}
                for entry in self._entries
                if not entry.used
            ]

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

    def _fingerprint(self, model: GenerativeModel | None, env: Env) -> JSON:
        """The model's fingerprint in this Env, computed once per (model, Env)."""
        if model is None:
            return None
        known = self._fingerprints.get((id(model), id(env)))
        if known is not None and known[0] is model and known[1] is env:
            return known[2]
        # Through JSON and back: tuples become lists, and what is not JSON shows as text.
        loaded: JSON = json.loads(json.dumps(model.fingerprint(env), sort_keys=True, default=str))
        self._fingerprints[(id(model), id(env))] = (model, env, loaded)  # kept alive: ids stay
        return loaded

    def _take(self, key: str, model: GenerativeModel | None) -> _Entry | None:
        """The first unreplayed recording of this call (by request alone when
        the Env has no model to fingerprint)."""
        with self._lock:
            if model is not None:
                waiting = self._waiting
            else:
                if self._waiting_by_request is None:
                    self._waiting_by_request = {}
                    for entry in self._entries:
                        key_alone = _canonical(None, entry.request)
                        self._waiting_by_request.setdefault(key_alone, deque()).append(entry)
                waiting = self._waiting_by_request
            queue = waiting.get(key)
            while queue:
                entry = queue.popleft()
                if not entry.used:
                    entry.used = True
                    return entry
        return None

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
        text = (
            _pretty(
                {
                    "format": "stagefx cassette",
                    "version": CASSETTE_VERSION,
                    "calls": [
                        {"model": entry.model, "request": entry.request, "answer": entry.answer}
                        for entry in calls
                    ],
                }
            )
            + "\n"
        )
        _refuse_secrets(text, (*self._secrets, *(s for group in secret_groups for s in group)))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.path)

    def _load(self) -> list[_Entry]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"cassette {self.path} cannot be read: {error}") from error
        if not isinstance(data, dict) or data.get("version") != CASSETTE_VERSION:
            raise ValueError(
                f"cassette {self.path} is not a stagefx cassette of version {CASSETTE_VERSION}"
            )
        calls = data.get("calls")
        if not isinstance(calls, list):
            raise ValueError(f"cassette {self.path} has no list of calls")
        entries: list[_Entry] = []
        for position, call in enumerate(calls):
            if not isinstance(call, dict) or not {"model", "request", "answer"} <= call.keys():
                raise ValueError(f"cassette {self.path}: call {position} is malformed")
            model, request = call["model"], call["request"]
            entries.append(_Entry(model, request, call["answer"], _canonical(model, request)))
        return entries

    def _miss(self, fingerprint: JSON, request: JSON) -> ReplayMissError:
        wanted = {"model": fingerprint, "request": request}
        with self._lock:
            candidates = [entry for entry in self._entries if not entry.used] or self._entries
            nearest = _nearest(_pretty(wanted), candidates)
        if nearest is None:
            return ReplayMissError(
                f"no recording in {self.path} (mode {self.mode!r}) and the cassette is empty: "
                "record it first (mode 'once' or 'new')",
                state=StageState.empty,
            )
        recorded = {"model": nearest.model, "request": nearest.request}
        diff = list(
            difflib.unified_diff(
                _pretty(recorded).splitlines(),
                _pretty(wanted).splitlines(),
                "nearest recorded call",
                "this call",
                lineterm="",
            )
        )
        if len(diff) > _DIFF_LINES:
            diff = [*diff[:_DIFF_LINES], f"... {len(diff) - _DIFF_LINES} more lines"]
        return ReplayMissError(
            f"no recording in {self.path} matches this model call (mode {self.mode!r}); "
            "the nearest recorded call differs:\n" + "\n".join(diff),
            state=StageState.empty,
            nearest=recorded,
        )


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
        matcher = difflib.SequenceMatcher(
            None, _pretty({"model": entry.model, "request": entry.request}), wanted
        )
        if matcher.real_quick_ratio() <= score or matcher.quick_ratio() <= score:
            continue
        ratio = matcher.ratio()
        if ratio > score:
            best, score = entry, ratio
    return best
