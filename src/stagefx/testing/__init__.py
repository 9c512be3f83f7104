"""Test support: deterministic models and clocks, a fake OpenAI server, laws.

`strategies` and `laws` need hypothesis (the `testing` extra); import them
explicitly: `from stagefx.testing import strategies, laws`. `FakeOpenAIServer`
needs the `openai` and `testing` extras and is imported on first use. Without
an extra, each raises an `ImportError` that says what to install.
"""

import importlib
from typing import TYPE_CHECKING

from stagefx.testing._clock import VirtualClock
from stagefx.testing._demo import demo_answer
from stagefx.testing._models import Answer, FunctionModel, ScriptedModel

if TYPE_CHECKING:
    from stagefx.testing._fake_openai import FakeOpenAIServer, Fault, RecordedRequest

__all__ = [
    "Answer",
    "FakeOpenAIServer",
    "Fault",
    "FunctionModel",
    "RecordedRequest",
    "ScriptedModel",
    "VirtualClock",
    "demo_answer",
]


def __getattr__(name: str) -> object:
    if name in ("FakeOpenAIServer", "Fault", "RecordedRequest"):
        from stagefx.testing import _fake_openai as fake_openai  # needs the optional extras

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
