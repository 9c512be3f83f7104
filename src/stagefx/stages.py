"""Stage: a pure, immutable description of work, and the typed facade over combinators.

Building a stage runs nothing. `run(state)` gives the effect as a `returns`
`RequiresContextFutureResult[StageState, StageException, Env]`; `attempt`
runs it and gives a `Result`; `execute` is the impure edge that raises.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import ClassVar, Literal, final, overload

import attrs
from returns.context import RequiresContextFutureResult
from returns.future import FutureResult
from returns.result import Failure, Result, Success

from stagefx import completion as completions
from stagefx.combinators import basic, cache, context, control, flow, meta
from stagefx.combinators import concurrent as fanout
from stagefx.combinators import router as routing_module
from stagefx.combinators._step import Step, identity
from stagefx.completion import DEFAULT_TOOL_ROUNDS, OutputSelection, model_routing
from stagefx.content import ContentElement
from stagefx.env import Env, ctx
from stagefx.errors import MissingEnvironmentError, StageException
from stagefx.state import StageState
from stagefx.structure import Detail, StageNode
from stagefx.tools import Tool
from stagefx.tracing import AttributeValue

__all__ = ["Stage", "StageMeta", "stage"]


@final
@attrs.frozen(slots=True)
class StageMeta:
    """What a stage is called and what it does; routers and traces read it."""

    name: str | None = None
    description: str | None = None
    values: Mapping[str, AttributeValue] = attrs.field(factory=dict)


@final
@attrs.frozen(slots=True, eq=False)
class Stage:
    """A unit of pipeline work: `StageState -> StageState`, failing as a value.

    Compose with the class methods (`sequence`, `loop`, `concurrent`, ...) and
    the modifiers (`when`, `with_retry`, `cached`, ...); each returns a new Stage
    and runs nothing. Constructors refuse bad arguments with `ValueError` or
    `TypeError`; running never raises but through `execute`.

    Example:
        ```python
        pipeline = Stage.sequence(
            Stage.completion("Summarise the report.", instructions="Be brief."),
            Stage.transform_result(shout),
        ).with_retry(limit=2)
        state = await pipeline.execute(env=Env.of(model))
        ```
    """

    _step: Step = attrs.field(alias="step")
    _parts: tuple[Step, ...] = attrs.field(alias="parts")
    _part_nodes: tuple[StageNode, ...] = attrs.field(alias="part_nodes")
    node: StageNode
    meta: StageMeta = attrs.field(factory=StageMeta)

    noop: ClassVar[Stage]
    """The identity stage: passes its state on untouched."""

    @classmethod
    def _of(cls, step: Step, node: StageNode, meta: StageMeta | None = None) -> Stage:
        return cls(
            step=step, parts=(step,), part_nodes=(node,), node=node, meta=meta or StageMeta()
        )

    def _modified(
        self, step: Step, kind: str, details: Mapping[str, Detail] | None = None, *more: Stage
    ) -> Stage:
        children = (self.node, *(other.node for other in more))
        return Stage._of(step, StageNode(kind, None, details or {}, children), self.meta)

    def describe(self) -> StageNode:
        """The pipeline's structure, without running it: combinators and named stages."""
        return self.node

    def to_mermaid(self) -> str:
        """`describe()` as a Mermaid flowchart."""
        return self.node.to_mermaid()

    # Constructors -------------------------------------------------------------

    @classmethod
    def predefined(
        cls, *elements: basic.PredefinedElement, result: ContentElement | None = None
    ) -> Stage:
        """Append fixed turns to the context (plain content alternates input and
        output); the result becomes `result` or the last output given."""
        return cls._of(basic.predefined(elements, result), StageNode("predefined"))

    @classmethod
    def transform_result(cls, transformation: basic.ResultTransform, /) -> Stage:
        """Replace the result with `transformation(result)` (sync or async)."""
        return cls._of(basic.transform_result(transformation), StageNode("transform_result"))

    @classmethod
    def transform_context(cls, transformation: basic.ContextTransform, /) -> Stage:
        """Replace the context with `transformation(context)` (sync or async)."""
        return cls._of(basic.transform_context(transformation), StageNode("transform_context"))

    @classmethod
    def trim_context(cls, *, limit: int) -> Stage:
        """Keep at most the last `limit` turns of the context."""
        node = StageNode("trim_context", details={"limit": limit})
        return cls._of(context.trim_context(limit), node)

    @classmethod
    def strip_context_tools(cls) -> Stage:
        """Remove every tool request and response from the context."""
        return cls._of(context.strip_context_tools(), StageNode("strip_context_tools"))

    @classmethod
    def sequence(cls, *stages: Stage) -> Stage:
        """Run `stages` in order, each on the state the previous returned; stop at
        the first failure. Nested sequences are flattened, so any depth runs.

        Example: `Stage.sequence(analyze, summarize, format_as_bullets)`
        """
        _require_stages(stages, "Stage.sequence")
        parts = tuple(part for item in stages for part in item._parts)
        nodes = tuple(node for item in stages for node in item._part_nodes)
        return cls(
            step=flow.sequence(parts),
            parts=parts,
            part_nodes=nodes,
            node=StageNode("sequence", children=nodes),
        )

    @classmethod
    def loop(
        cls,
        stage: Stage,
        /,
        *stages: Stage,
        condition: flow.LoopCondition,
        mode: Literal["post_check", "pre_check"] = "post_check",
        max_iterations: int | None = None,
    ) -> Stage:
        """Repeat the stages (as a sequence) while `condition(state=, iteration=)`
        holds; `iteration` is the number of finished runs. `post_check` runs the
        body before the first check, `pre_check` checks first; `max_iterations`
        caps the runs. A condition that raises or returns a non-bool fails the
        stage with `StageExecutionError`.

        Example: `Stage.loop(refine, condition=below_three)` where
        `def below_three(*, state, iteration): return iteration < 3`.
        """
        body = (stage, *stages)
        _require_stages(body, "Stage.loop")
        parts = tuple(part for item in body for part in item._parts)
        details: dict[str, Detail] = {"mode": mode}
        if max_iterations is not None:
            details["max_iterations"] = max_iterations
        node = StageNode("loop", None, details, tuple(n for item in body for n in item._part_nodes))
        return cls._of(
            meta.in_span(flow.loop(parts, condition, mode, max_iterations), "loop"), node
        )

    @classmethod
    def concurrent(
        cls, *stages: Stage, merge: fanout.Merge, concurrent_tasks: int | None = None
    ) -> Stage:
        """Run `stages` concurrently on the same state (at most `concurrent_tasks`
        at once) and merge their outcomes, in order, into one state. `merge`
        receives each branch's `StageState | StageException`; what it raises
        fails the stage. Token usage of every branch is kept.

        Example: `Stage.concurrent(aspect_a, aspect_b, merge=first_success)`
        """
        _require_stages(stages, "Stage.concurrent")
        branches = tuple(s._step for s in stages)
        fan = fanout.concurrent(branches, merge, concurrent_tasks)
        details: dict[str, Detail] = {}
        if concurrent_tasks is not None:
            details["concurrent_tasks"] = concurrent_tasks
        node = StageNode("concurrent", None, details, tuple(s.node for s in stages))
        return cls._of(meta.in_span(fan, "concurrent", {"branches": len(stages)}), node)

    @classmethod
    def router(cls, *stages: Stage, routing: routing_module.Routing | None = None) -> Stage:
        """Run the one stage `routing` names; by default the Env's model picks,
        seeing each stage's name and description (`with_meta`), which all need."""
        _require_stages(stages, "Stage.router")
        routes = tuple((s.meta.name or "", s.meta.description, s._step) for s in stages)
        choose = model_routing if routing is None else routing_module.user_routing(routing)
        node = StageNode(
            "router",
            None,
            {"routing": "model" if routing is None else "custom"},
            tuple(s.node for s in stages),
        )
        return cls._of(meta.in_span(routing_module.router(routes, choose), "router"), node)

    @classmethod
    def completion(
        cls,
        input: ContentElement,  # the spec's name
        /,
        *,
        instructions: str = "",
        tools: Iterable[Tool[..., object]] = (),
        output: OutputSelection = "auto",
        tool_rounds: int = DEFAULT_TOOL_ROUNDS,
        **extra: object,
    ) -> Stage:
        """Add `input` to the context and ask the Env's model; tool calls are run
        (up to `tool_rounds` rounds) and the final output becomes the result.
        `output` asks for text, JSON, YAML or a type; `extra` goes to the provider.

        Fails with `MissingEnvironmentError` (no model in the Env), a
        `ModelError` subclass (the provider failed), `OutputValidationError`
        (output that does not parse), `ToolError` or `ToolRoundsExceededError`.

        Example: `Stage.completion("List three languages.", output="json")`
        """
        step, node = completions.build(
            "completion",
            completions.fixed_input(input),
            instructions=instructions,
            tools=tools,
            output=output,
            tool_rounds=tool_rounds,
            extra=extra,
        )
        return cls._of(step, node)

    @classmethod
    def prompting_completion(
        cls,
        input: Callable[[], ContentElement | Awaitable[ContentElement]],  # the spec's name
        /,
        *,
        instructions: str = "",
        tools: Iterable[Tool[..., object]] = (),
        output: OutputSelection = "auto",
        tool_rounds: int = DEFAULT_TOOL_ROUNDS,
        **extra: object,
    ) -> Stage:
        """Like `completion`, with the input fetched by `input()` at run time."""
        step, node = completions.build(
            "prompting_completion",
            completions.prompted_input(input),
            instructions=instructions,
            tools=tools,
            output=output,
            tool_rounds=tool_rounds,
            extra=extra,
        )
        return cls._of(step, node)

    @classmethod
    def loopback_completion(
        cls,
        *,
        instructions: str = "",
        tools: Iterable[Tool[..., object]] = (),
        output: OutputSelection = "auto",
        tool_rounds: int = DEFAULT_TOOL_ROUNDS,
        **extra: object,
    ) -> Stage:
        """Give the model its last output back as the input (replacing the last
        exchange) and ask again: iterative refinement."""
        step, node = completions.build(
            "loopback_completion",
            completions.no_input,
            instructions=instructions,
            tools=tools,
            output=output,
            tool_rounds=tool_rounds,
            extra=extra,
        )
        return cls._of(completions.loopback(step), node)

    @classmethod
    def result_completion(
        cls,
        *,
        instructions: str = "",
        tools: Iterable[Tool[..., object]] = (),
        output: OutputSelection = "auto",
        tool_rounds: int = DEFAULT_TOOL_ROUNDS,
        **extra: object,
    ) -> Stage:
        """Like `completion`, with the current result as the input."""
        step, node = completions.build(
            "result_completion",
            completions.result_input,
            instructions=instructions,
            tools=tools,
            output=output,
            tool_rounds=tool_rounds,
            extra=extra,
        )
        return cls._of(step, node)

    # Modifiers ----------------------------------------------------------------

    def with_meta(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        **values: AttributeValue,
    ) -> Stage:
        """Name and describe the stage; a name also prefixes failure paths."""
        if name is not None and (not isinstance(name, str) or not name):
            raise ValueError(f"with_meta(name=...) needs a non-empty str, got {name!r}")
        updated = StageMeta(
            name=self.meta.name if name is None else name,
            description=self.meta.description if description is None else description,
            values={**self.meta.values, **values},
        )
        if name is None:
            return Stage(
                step=self._step,
                parts=self._parts,
                part_nodes=self._part_nodes,
                node=self.node,
                meta=updated,
            )
        return Stage._of(meta.named(self._step, name), attrs.evolve(self.node, name=name), updated)

    def when(
        self,
        condition: bool | control.StateCondition,
        *,
        alternative: Stage | None = None,
    ) -> Stage:
        """Run this stage only if `condition` (a bool or `(*, state) -> bool`)
        holds; otherwise run `alternative`, or pass the state on."""
        other = None if alternative is None else alternative._step
        shown: Detail = condition if isinstance(condition, bool) else "callable"
        more = () if alternative is None else (alternative,)
        return self._modified(
            control.when(self._step, condition, other), "when", {"condition": shown}, *more
        )

    def cached(
        self,
        *,
        limit: int | None = None,
        expiration: float | None = None,
        key: str | None = None,
    ) -> Stage:
        """Remember outputs by input state for `expiration` seconds; equal inputs
        running at once share one run, and failures are not kept.

        Entries go to the Env's `CacheStore` if it has one, else to this stage's
        own memory (at most `limit` entries). `key` names the entries in a shared
        store, so other stage values and processes find them.

        Example: `Stage.completion("Summarise.").cached(limit=10, expiration=3600)`
        """
        details: dict[str, Detail] = {}
        if limit is not None:
            details["limit"] = limit
        if expiration is not None:
            details["expiration"] = expiration
        if key is not None:
            details["key"] = key
        step = meta.in_span(cache.cached(self._step, limit, expiration, key), "cached")
        return self._modified(step, "cached", details)

    def with_retry(
        self,
        *,
        limit: int = 1,
        delay: control.Delay = None,
        catching: control.Catching = Exception,
    ) -> Stage:
        """On a failure matching `catching`, run again up to `limit` more times."""
        retried = control.with_retry(self._step, limit, delay, catching)
        step = meta.in_span(retried, "retry", {"limit": limit})
        return self._modified(step, "retry", {"limit": limit})

    def with_fallback(self, fallback: Stage, *, catching: control.Catching = Exception) -> Stage:
        """On a failure matching `catching`, run `fallback` on the same input."""
        fell_back = control.with_fallback(self._step, fallback._step, catching)
        return self._modified(meta.in_span(fell_back, "fallback"), "fallback", None, fallback)

    def with_timeout(self, seconds: float) -> Stage:
        """Fail with `StageTimeoutError` if the stage runs longer than `seconds`."""
        timed = control.with_timeout(self._step, seconds)
        details = {"seconds": seconds}
        return self._modified(meta.in_span(timed, "timeout", details), "timeout", details)

    def with_volatile_context(self) -> Stage:
        """Keep this stage's result but not its changes to the context."""
        return self._modified(context.volatile_context(self._step), "volatile_context")

    def with_volatile_tools_context(self) -> Stage:
        """Keep this stage's context changes except the tool turns it added."""
        return self._modified(context.volatile_tools_context(self._step), "volatile_tools_context")

    def ignore_result(self) -> Stage:
        """Keep this stage's context changes but not its result."""
        return self._modified(context.ignore_result(self._step), "ignore_result")

    def extend_result(self) -> Stage:
        """Append this stage's result to the previous one instead of replacing it."""
        return self._modified(context.extend_result(self._step), "extend_result")

    def traced(self, *, label: str | None = None) -> Stage:
        """Record a span for each run (named `label`, else the stage's name)."""
        name = label or self.meta.name or "stage"
        step = meta.traced(self._step, name, self.meta.values)
        return self._modified(step, "traced", {"label": name})

    # Running ------------------------------------------------------------------

    def run(
        self, state: StageState | None = None
    ) -> RequiresContextFutureResult[StageState, StageException, Env]:
        """The effect of running this stage on `state`: give it an `Env`, await it."""
        initial = StageState.empty if state is None else state
        step = self._step

        def effect(env: Env) -> FutureResult[StageState, StageException]:
            return FutureResult(_as_result(step, initial, env))

        return RequiresContextFutureResult(effect)

    async def attempt(
        self, state: StageState | None = None, *, env: Env | None = None
    ) -> Result[StageState, StageException]:
        """Run on `state` (default: empty) in `env` (default: the ambient one) and
        give the `Result`: `Success(state)` or `Failure(StageException)`. Without
        any Env it is a `Failure(MissingEnvironmentError)`."""
        initial = StageState.empty if state is None else state
        resolved = env if env is not None else ctx.current()
        if resolved is None:
            return Failure(_no_env(initial))
        return await _as_result(self._step, initial, resolved)

    async def execute(
        self, state: StageState | None = None, *, env: Env | None = None
    ) -> StageState:
        """Like `attempt`, but return the final state or raise the `StageException`.

        Example: `state = await pipeline.execute(env=Env.of(ScriptedModel("hi")))`
        """
        initial = StageState.empty if state is None else state
        resolved = env if env is not None else ctx.current()
        if resolved is None:
            raise _no_env(initial)
        outcome = await self._step(initial, resolved)
        if isinstance(outcome, StageException):
            raise outcome
        return outcome


Stage.noop = Stage(step=identity, parts=(), part_nodes=(), node=StageNode("noop"))


async def _as_result(step: Step, state: StageState, env: Env) -> Result[StageState, StageException]:
    outcome = await step(state, env)
    if isinstance(outcome, StageException):
        return Failure(outcome)
    return Success(outcome)


def _no_env(state: StageState) -> MissingEnvironmentError:
    return MissingEnvironmentError(
        "no Env to run in: pass env=Env.of(...) or run inside `async with ctx.scope(...)`",
        state=state,
    )


def _require_stages(stages: tuple[object, ...], what: str) -> None:
    if not stages:
        raise ValueError(f"{what} needs at least one stage")
    for position, item in enumerate(stages):
        if not isinstance(item, Stage):
            raise TypeError(f"{what}: argument {position} is {type(item).__name__}, not a Stage")


@overload
def stage(function: basic.StageFunction, /) -> Stage: ...


@overload
def stage(function: basic.StageFunctionWithEnv, /) -> Stage: ...


def stage(function: basic.StageFunction | basic.StageFunctionWithEnv, /) -> Stage:
    """Turn `async def f(*, state: StageState[, env: Env]) -> StageState` into a
    Stage. `f` may also return a `Result`/`FutureResult`; what it raises becomes
    a `StageExecutionError` carrying the input state. A sync function is refused
    with `TypeError`.

    Example:
        ```python
        @stage
        async def tag(*, state: StageState) -> StageState:
            return state.updated(result=f"[{state.result.as_string()}]")
        ```
    """
    name = getattr(function, "__name__", None)
    node = StageNode("stage", name if isinstance(name, str) else None)
    return Stage._of(basic.custom(function), node)
