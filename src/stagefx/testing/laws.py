"""Law checkers: call them from your tests to verify your own stages.

Each node class declares the laws it obeys beside it, as `Law` values; this
module publishes their checks, and `all_laws()` collects them. A check runs
stages on a state in an `Env` and raises `LawViolation` (an `AssertionError`)
saying how a law broke; checks are async (under hypothesis, wrap a call in
`anyio.run`). The laws speak of deterministic stages (a model must answer equal
requests alike, as `FunctionModel` does), and checks run each stage several
times: give the Env a `VirtualClock` so that waits stay instant.
"""

from __future__ import annotations

import importlib
import pkgutil

from stagefx._public import publish as _publish
from stagefx._runtime import nodes as _nodes
from stagefx._runtime.equivalence import LawViolation, Staged, assert_equivalent, equivalent
from stagefx._runtime.node import Law
from stagefx._runtime.node import Node as _Node
from stagefx._runtime.nodes.cached import check_cached_determinism
from stagefx._runtime.nodes.concurrent import check_concurrent
from stagefx._runtime.nodes.control import check_fallback, check_retry, check_when
from stagefx._runtime.nodes.flow import (
    check_associativity,
    check_identity,
    check_loop,
    check_short_circuit,
)
from stagefx._runtime.nodes.leaves import check_context_functor, check_result_functor

__all__ = [
    "Law",
    "LawViolation",
    "Staged",
    "all_laws",
    "assert_equivalent",
    "check_associativity",
    "check_cached_determinism",
    "check_concurrent",
    "check_context_functor",
    "check_fallback",
    "check_identity",
    "check_loop",
    "check_result_functor",
    "check_retry",
    "check_short_circuit",
    "check_when",
    "equivalent",
]


def all_laws() -> dict[str, tuple[Law[...], ...]]:
    """Every law a node class declares (every node module is imported first),
    by the kind of node it holds for: `"sequence"`, `"loop"`, ..."""
    for module in pkgutil.iter_modules(_nodes.__path__, f"{_nodes.__name__}."):
        importlib.import_module(module.name)
    found: dict[str, tuple[Law[...], ...]] = {}
    seen: set[type[_Node]] = set()
    pending = list(reversed(_Node.__subclasses__()))
    while pending:
        kind = pending.pop()
        if kind in seen:
            continue
        seen.add(kind)
        pending.extend(reversed(kind.__subclasses__()))
        if "laws" in vars(kind):  # declared here, not inherited
            found[kind.kind] = (*found.get(kind.kind, ()), *kind.laws)
    return found


_publish(__name__, globals(), __all__)
