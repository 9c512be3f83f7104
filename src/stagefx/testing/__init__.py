"""Test support: deterministic models and clocks, fake provider servers, laws.

`strategies` and `laws` need hypothesis (the `testing` extra); import them
explicitly: `from stagefx.testing import strategies, laws`. The fake servers
and what they share (`Fault`, `RecordedRequest`, `SentChunk`) need the `testing`
extra (aiohttp) and are imported on first use; `FakeOpenAIServer`,
`FakeAnthropicServer` and `FakeGeminiServer` need their provider's extra too
(`openai`, `anthropic`, `gemini`). Without an extra, each raises an
`ImportError` that says what to install.
"""

import importlib
import typing

from stagefx._public import publish as _publish
from stagefx.testing._clock import VirtualClock
from stagefx.testing._demo import demo_answer
from stagefx.testing._models import Answer, FunctionModel, ScriptedModel
from stagefx.testing._recorder import Recorder, RecordMode, ReplayMissError

if typing.TYPE_CHECKING:
    from stagefx.testing._fake_anthropic import FakeAnthropicServer
    from stagefx.testing._fake_gemini import FakeGeminiServer
    from stagefx.testing._fake_http import Fault, RecordedRequest, SentChunk
    from stagefx.testing._fake_openai import FakeOpenAIServer

__all__ = [
    "Answer",
    "FakeAnthropicServer",
    "FakeGeminiServer",
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

_FAKE_HTTP = ("Fault", "RecordedRequest", "SentChunk")

_publish(__name__, globals(), [name for name in __all__ if name in globals()])


def __getattr__(name: str) -> object:
    if name == "FakeAnthropicServer":
        from stagefx.testing import _fake_anthropic as fake_anthropic  # needs the optional extras

        _publish(__name__, vars(fake_anthropic), ("FakeAnthropicServer",))
        return fake_anthropic.FakeAnthropicServer
    if name == "FakeGeminiServer":
        from stagefx.testing import _fake_gemini as fake_gemini  # needs the optional extras

        _publish(__name__, vars(fake_gemini), ("FakeGeminiServer",))
        return fake_gemini.FakeGeminiServer
    if name == "FakeOpenAIServer":
        from stagefx.testing import _fake_openai as fake_openai  # needs the optional extras

        _publish(__name__, vars(fake_openai), ("FakeOpenAIServer",))
        return fake_openai.FakeOpenAIServer
    if name in _FAKE_HTTP:
        from stagefx.testing import _fake_http as fake_http  # needs the `testing` extra

        _publish(__name__, vars(fake_http), _FAKE_HTTP)
        return getattr(fake_http, name)
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
