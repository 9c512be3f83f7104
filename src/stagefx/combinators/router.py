"""Routing: choose one of several named stages at run time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, TypeAlias

from stagefx.combinators._step import Outcome, Step, failure, resolve
from stagefx.env import Env
from stagefx.errors import RoutingError, StageException
from stagefx.state import StageState
from stagefx.tracing import annotate

__all__ = ["Chooser", "Route", "Routing", "router", "user_routing"]


class Routing(Protocol):
    """`(*, state, routes) -> name`: `routes` maps each route's name to its description."""

    def __call__(self, *, state: StageState, routes: Mapping[str, str]) -> str | Awaitable[str]: ...


Route = tuple[str, str | None, Step]
"""A route: its name, its description, and its step."""

Chooser: TypeAlias = Callable[[StageState, Env, Mapping[str, str]], Awaitable[str | StageException]]
"""How a router picks: a route name, or a failure."""


def user_routing(routing: Routing) -> Chooser:
    """A chooser from a user's `(*, state, routes) -> name` (sync or async)."""
    if not callable(routing):
        raise TypeError(f"router routing must be callable, got {type(routing).__name__}")

    async def choose(state: StageState, env: Env, routes: Mapping[str, str]) -> str:
        return await resolve(routing(state=state, routes=routes))

    return choose


def router(routes: tuple[Route, ...], choose: Chooser) -> Step:
    """Ask `choose` for a route name and run that route; an unknown name is a
    `RoutingError`. Routes must all be named, described and distinct."""
    if not routes:
        raise ValueError("Stage.router needs at least one stage")
    descriptions: dict[str, str] = {}
    steps: dict[str, Step] = {}
    for position, (name, description, step) in enumerate(routes):
        if not name:
            raise ValueError(
                f"Stage.router: route {position} has no name; give it .with_meta(name=...)"
            )
        if not description:
            raise ValueError(
                f"Stage.router: route {name!r} has no description; "
                "give it .with_meta(description=...)"
            )
        if name in steps:
            raise ValueError(f"Stage.router: two routes are named {name!r}")
        descriptions[name] = description
        steps[name] = step

    async def run(state: StageState, env: Env) -> Outcome:
        try:
            chosen: object = await choose(state, env, descriptions)
        except Exception as error:
            return failure(error, state)
        if isinstance(chosen, StageException):
            return chosen
        step = steps.get(chosen) if isinstance(chosen, str) else None
        if step is None:
            annotate("route", repr(chosen))
            return RoutingError(
                f"routing chose {chosen!r}, which is none of the routes {sorted(steps)}",
                state=state,
            )
        annotate("route", str(chosen))
        return await step(state, env)

    return run
