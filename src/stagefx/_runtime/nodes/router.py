"""Routing: choose one of several named stages at run time."""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import ClassVar, Protocol, final

import attrs

from stagefx._core.conversation import ModelInput
from stagefx._core.errors import RoutingError, StageException
from stagefx._core.meta import AttributeValue, StageMeta
from stagefx._core.request import ModelRequest, OutputSpec
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.tracing import annotate
from stagefx._model.boundary import call_model
from stagefx._runtime.node import Next, Node, Run, SpanSpec, Wait
from stagefx._runtime.user_code import failure, resolve

__all__ = ["Route", "Router", "Routing"]


class Routing(Protocol):
    """`(*, state, options) -> name`, as draive calls it: `options` maps each
    route's name to its `StageMeta` (name, description, tags, values)."""

    def __call__(
        self, *, state: StageState, options: Mapping[str, StageMeta]
    ) -> str | Awaitable[str]: ...


Route = tuple[StageMeta, Node]
"""A route: its meta (name and description) and its node."""


def _routes(routes: tuple[Route, ...]) -> dict[str, tuple[StageMeta, Node]]:
    if not routes:
        raise ValueError("Stage.router needs at least one stage")
    if len(routes) == 1:  # draive: nothing to choose, so no name needed
        meta, node = routes[0]
        return {meta.name or "": (meta, node)}
    checked: dict[str, tuple[StageMeta, Node]] = {}
    for position, (meta, node) in enumerate(routes):
        name, description = meta.name, meta.description
        if not name:
            raise ValueError(
                f"Stage.router: route {position} has no name; give it .with_meta(name=...)"
            )
        if not description:
            raise ValueError(
                f"Stage.router: route {name!r} has no description; "
                "give it .with_meta(description=...)"
            )
        if name in checked:
            raise ValueError(f"Stage.router: two routes are named {name!r}")
        checked[name] = (meta, node)
    return checked


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
def _check_routing(_: object, __: object, value: Routing | None) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"router routing must be callable, got {type(value).__name__}")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class Router(Node):
    """Ask `routing` (default: the Env's model, through the one model-call path)
    for a route name and run that route; an unknown name is a `RoutingError`.
    A router of one route runs it without asking (as draive does)."""

    kind: ClassVar[str] = "router"

    routes: dict[str, tuple[StageMeta, Node]] = attrs.field(converter=_routes)
    routing: Routing | None = attrs.field(validator=_check_routing)

    def children(self) -> tuple[Node, ...]:
        return tuple(node for _, node in self.routes.values())

    def details(self) -> Mapping[str, AttributeValue]:
        return {"routing": "model" if self.routing is None else "custom"}

    def span(self) -> SpanSpec:
        return ("router", None)

    def start(self, state: StageState, env: Env) -> Next:
        if len(self.routes) == 1:
            (name, (_, only)), *_ = self.routes.items()
            annotate("route", name)
            return Run(only, state)
        return Wait(self._routed(state, env))

    async def _routed(self, state: StageState, env: Env) -> Next:
        chosen: object
        if self.routing is None:
            descriptions = {name: meta.description or "" for name, (meta, _) in self.routes.items()}
            asked = await _ask_model(state, env, descriptions)
            if not isinstance(asked, tuple):
                return asked
            chosen, state = asked
        else:
            options = {name: meta for name, (meta, _) in self.routes.items()}
            try:
                chosen = await resolve(self.routing(state=state, options=options))
            except Exception as error:
                return failure(error, state)
        route = self._route(chosen)
        if route is None:
            annotate("route", repr(chosen))
            return RoutingError(
                f"routing chose {chosen!r}, which is none of the routes {sorted(self.routes)}",
                state=state,
            )
        annotate("route", str(chosen))
        return Run(route[1], state)

    def _route(self, chosen: object) -> tuple[StageMeta, Node] | None:
        """The route named `chosen`: exactly, else ignoring case and spaces
        around it (draive matches lowercased names)."""
        if not isinstance(chosen, str):
            return None
        route = self.routes.get(chosen)
        if route is not None:
            return route
        wanted = chosen.strip().lower()
        for name, found in self.routes.items():
            if name.lower() == wanted:
                return found
        return None


async def _ask_model(
    state: StageState, env: Env, routes: Mapping[str, str]
) -> tuple[str, StageState] | StageException:
    """The Env's model picks a route by name, seeing names and descriptions;
    the state that follows carries the usage of asking."""
    listing = "\n".join(f"- {name}: {description}" for name, description in routes.items())
    request = ModelRequest(
        instructions=(
            "Choose the route that best handles the conversation so far. "
            "Answer with the route's name only, exactly as written.\nRoutes:\n" + listing
        ),
        context=(*state.context, ModelInput.of(state.result))
        if not state.result.is_empty
        else state.context,
        output=OutputSpec(mode="text"),
    )
    answered = await call_model(request, state, env, quiet=True)  # its choice is no text to show
    if not isinstance(answered, tuple):
        return answered
    answer, spent = answered
    said = answer.content.as_string().strip().strip("`'\".").strip()
    by_lower = {name.lower(): name for name in routes}
    chosen = by_lower.get(said.lower())
    if chosen is None:
        return RoutingError(
            f"the model answered {said!r}, which names none of the routes {sorted(routes)}",
            state=spent,
        )
    return chosen, spent
