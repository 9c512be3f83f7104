"""Test support: deterministic models and clocks, strategies and law checkers.

`strategies` and `laws` need hypothesis (the `testing` extra); import them
explicitly: `from stagefx.testing import strategies, laws`.
"""

from stagefx.testing.clock import VirtualClock
from stagefx.testing.demo import demo_answer
from stagefx.testing.models import Answer, FunctionModel, ScriptedModel

__all__ = ["Answer", "FunctionModel", "ScriptedModel", "VirtualClock", "demo_answer"]
