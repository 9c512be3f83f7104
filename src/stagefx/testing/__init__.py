"""Test support: deterministic models and clocks, strategies and law checkers.

`strategies` and `laws` need hypothesis (the `testing` extra); import them
explicitly: `from stagefx.testing import strategies, laws`.
"""

from stagefx.testing.clock import VirtualClock

__all__ = ["VirtualClock"]
