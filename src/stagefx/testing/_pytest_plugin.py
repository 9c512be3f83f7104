"""pytest fixtures for testing stagefx flows (registered through the `pytest11`
entry point, so installing stagefx makes them available).

- `stagefx_clock`: a fresh `VirtualClock`.
- `stagefx_tracer`: a fresh `RecordingTracer`.
- `scripted_env`: `scripted_env(*answers)` gives an `Env` with a `ScriptedModel`
  of those answers, the clock and the tracer; the model is `env.get(ScriptedModel)`.
- `fake_openai`: a running `FakeOpenAIServer` with the demo model, with
  `OPENAI_API_KEY` and `OPENAI_BASE_URL` pointing `OpenAI()` at it for the test.
- `stagefx_recorder`: a `Recorder` whose cassette is named after the test
  (`tests/cassettes/<module path>/<class>/<test>.json` under the rootdir), in the mode
  `--stagefx-record-mode=once|replay|record|new` gives (default `once`; CI runs
  `replay`, so a missing cassette fails instead of calling a model).

Heavy imports happen inside the fixtures: the plugin loads in every pytest run
of a project that has stagefx installed.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest

from stagefx._env.env import Env
from stagefx._env.tracing import RecordingTracer
from stagefx.testing._clock import VirtualClock
from stagefx.testing._models import Answer, ScriptedModel

if TYPE_CHECKING:
    from stagefx.testing._fake_openai import FakeOpenAIServer
    from stagefx.testing._recorder import Recorder, RecordMode

__all__ = [
    "fake_openai",
    "pytest_addoption",
    "scripted_env",
    "stagefx_clock",
    "stagefx_recorder",
    "stagefx_tracer",
]

_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def pytest_addoption(parser: pytest.Parser) -> None:
    """`--stagefx-record-mode`: how `stagefx_recorder` treats its cassette."""
    parser.getgroup("stagefx").addoption(
        "--stagefx-record-mode",
        choices=("once", "replay", "record", "new"),
        default="once",
        help="Recorder mode for the stagefx_recorder fixture (default: once; CI: replay)",
    )


@pytest.fixture
def stagefx_recorder(request: pytest.FixtureRequest) -> Recorder:
    """A `Recorder` for this test's cassette, in the `--stagefx-record-mode` mode."""
    from stagefx.testing._recorder import Recorder  # loaded only by tests that use it

    # One of the option's choices (its default included): argparse refuses any other.
    mode = cast("RecordMode", request.config.getoption("--stagefx-record-mode"))
    return Recorder(cassette_of(request.config.rootpath, request.node.nodeid), mode=mode)


def cassette_of(root: Path, nodeid: str) -> Path:
    """The cassette of the test `nodeid`: `tests/cassettes/` then the test's
    module path (without a leading `tests/` and `.py`), its class, and its
    name, each a safe file name. A part that had to be changed to be safe
    gets a hash of what it was, so no two tests share a cassette."""
    file, *names = nodeid.split("::")
    module = Path(file).with_suffix("").parts
    if module and module[0] == "tests":
        module = module[1:]
    *folders, name = [_segment(part) for part in (*module, *names)] or ["test"]
    return root / "tests" / "cassettes" / Path(*folders) / f"{name}.json"


def _segment(raw: str) -> str:
    safe = _SAFE.sub("_", raw).strip("_.") or "test"
    if safe == raw:
        return safe
    return f"{safe}-{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:8]}"


@pytest.fixture
def stagefx_clock() -> VirtualClock:
    """A fresh `VirtualClock`: retries and timeouts without real waiting."""
    return VirtualClock()


@pytest.fixture
def stagefx_tracer() -> RecordingTracer:
    """A fresh `RecordingTracer`: the spans of what ran."""
    return RecordingTracer()


@pytest.fixture
def scripted_env(
    stagefx_clock: VirtualClock, stagefx_tracer: RecordingTracer
) -> Callable[..., Env]:
    """`scripted_env(*answers)`: an Env with a ScriptedModel, the clock and the tracer."""

    def build(*answers: Answer) -> Env:
        return Env.of(ScriptedModel(*answers), stagefx_clock, stagefx_tracer, name="test")

    return build


@pytest.fixture
def fake_openai(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAIServer]:
    """A running FakeOpenAIServer that `OpenAI()` reaches through the environment."""
    from stagefx.testing._fake_openai import FakeOpenAIServer  # optional extras

    with FakeOpenAIServer() as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-fake-openai")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        yield server
