"""Test support: deterministic models and clocks, a fake OpenAI server, laws.

`strategies` and `laws` need hypothesis (the `testing` extra); import them
explicitly: `from stagefx.testing import strategies, laws`. `FakeOpenAIServer`
(with `Fault`, `RecordedRequest` and `SentChunk`) needs the `openai` and
`testing` extras and is imported on first use. Without an extra, each raises
an `ImportError` that says what to install.
"""

import importlib
import typing

from stagefx._public import publish as _publish
from stagefx.testing._clock import VirtualClock
from stagefx.testing._demo import demo_answer
from stagefx.testing._models import Answer, FunctionModel, ScriptedModel
from stagefx.testing._recorder import Recorder, RecordMode, ReplayMissError

if typing.TYPE_CHECKING:
    from stagefx.testing._fake_openai import FakeOpenAIServer, Fault, RecordedRequest, SentChunk

__all__ = [
    "Answer",
    "FakeOpenAIServer",
    "Fault",
    "FunctionModel",
    "RecordMode",
    "RecordedRequest",
    "Recorder",
    "ReplayMissError",
    "ScriptedModel",
    "SentChunk",
    "VirtualClock",
    "demo_answer",
]

_FAKE_OPENAI = ("FakeOpenAIServer", "Fault", "RecordedRequest", "SentChunk")

_publish(__name__, globals(), [name for name in __all__ if name in globals()])


def __getattr__(name: str) -> object:
    if name in _FAKE_OPENAI:
        from stagefx.testing import _fake_openai as fake_openai  # needs the optional extras

        _publish(__name__, vars(fake_openai), _FAKE_OPENAI)
        return getattr(fake_openai, name)
    if name in ("strategies", "laws"):  # `from stagefx.testing import laws`, first time
        try:
            import hypothesis
        except ImportError as error:
            raise ImportError(
                f"stagefx.testing.{name} needs hypothesis: install the `testing` extra with "
                'pip install "stagefx[testing]"'
            ) from error
        del hypothesis
        return importlib.import_module(f"stagefx.testing.{name}")
    raise AttributeError(f"module 'stagefx.testing' has no attribute {name!r}")
