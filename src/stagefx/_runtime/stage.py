"""Stage: a pure, immutable description of work, and the typed facade over nodes.

A Stage wraps one node of the tree in `stagefx._runtime.nodes`; building runs nothing.
`run(state)` gives the effect as a `returns`
`RequiresContextFutureResult[StageState, StageException, Env]`; `attempt`
runs it and gives a `Result`; `execute` is the impure edge that raises. All
three hand the tree to the one interpreter.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterable, Awaitable, Callable, Iterable
from typing import ClassVar, Concatenate, Literal, ParamSpec, TypeVar, cast, final, overload

import attrs
from returns.context import RequiresContextFutureResult
from returns.future import FutureResult
from returns.result import Failure, Result, Success

from stagefx._core.content import ContentElement
from stagefx._core.conversation import ModelContext
from stagefx._core.errors import StageException, StageExecutionError
from stagefx._core.meta import AttributeValue, MetaInput, StageMeta
from stagefx._core.state import StageState
from stagefx._env.env import Env, resolved
from stagefx._env.events import StageEvent
from stagefx._env.memory import StageMemory
from stagefx._model.output import OutputSelection
from stagefx._model.tools import Tool, ToolContext, ToolSource
from stagefx._runtime import batch as batches
from stagefx._runtime.batch import BatchInput, BatchProgress, BatchResults
from stagefx._runtime.interpreter import interpret
from stagefx._runtime.node import Node
from stagefx._runtime.nodes import cached, context, control, flow, leaves, naming
from stagefx._runtime.nodes import cached_externally as external
from stagefx._runtime.nodes import completion as completions
from stagefx._runtime.nodes import concurrent as fanout
from stagefx._runtime.nodes import evaluation_stages as evaluations
from stagefx._runtime.nodes import memory_stages as memory_nodes
from stagefx._runtime.nodes import router as _routing
from stagefx._runtime.nodes import tool_call as tool_calls
from stagefx._runtime.nodes.completion import DEFAULT_TOOL_ROUNDS
from stagefx._runtime.nodes.with_ctx import WithCtx
from stagefx._runtime.outline import StageNode, outline_of
from stagefx._runtime.streaming import stream_run

__all__ = ["Stage", "StageMeta", "stage"]

P = ParamSpec("P")
Key = TypeVar("Key")


def _made(node: Node, given: MetaInput) -> Stage:
    """A stage of `node` with `meta=` applied as `with_meta` applies it (a
    name also prefixes failure paths)."""
    stage_meta = StageMeta.of(given)
    if stage_meta.name is not None:
        node = naming.Named(node, stage_meta.name)
    return Stage(node, stage_meta)


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

    node: Node
    """The root of this stage's tree (see `stagefx._runtime.nodes`)."""
    meta: StageMeta = attrs.field(factory=StageMeta)

    noop: ClassVar[Stage]
    """The identity stage: passes its state on untouched."""

    def _wrapped(self, node: Node) -> Stage:
        return Stage(node, self.meta)

    def describe(self) -> StageNode:
        """The pipeline's structure, without running it: combinators and named stages."""
        return outline_of(self.node)

    def to_mermaid(self) -> str:
        """`describe()` as a Mermaid flowchart."""
        return self.describe().to_mermaid()

    # Constructors -------------------------------------------------------------

    @classmethod
    def predefined(
        cls,
        *elements: leaves.PredefinedElement,
        result: ContentElement | None = None,
        meta: MetaInput = None,
    ) -> Stage:
        """Append fixed turns to the context (plain content alternates input and
        output); the result becomes `result` if given, else stays as it was."""
        return _made(leaves.Predefined.of(elements, result), meta)

    @classmethod
    def transform_result(
        cls, transformation: leaves.ResultTransform, /, *, meta: MetaInput = None
    ) -> Stage:
        """Replace the result with `transformation(result)` (sync or async)."""
        return _made(leaves.TransformResult(transformation), meta)

    @classmethod
    def transform_context(
        cls, transformation: leaves.ContextTransform, /, *, meta: MetaInput = None
    ) -> Stage:
        """Replace the context with `transformation(context)` (sync or async)."""
        return _made(leaves.TransformContext(transformation), meta)

    @classmethod
    def trim_context(cls, *, limit: int | slice | None = None, meta: MetaInput = None) -> Stage:
        """As draive: keep the first `limit` turns (an int), the turns a `slice`
        selects, or none at all (`None`, the default, clears the context).

        Example: `Stage.trim_context(limit=slice(-4, None))` keeps the last four.
        """
        return _made(context.TrimContext(limit), meta)

    @classmethod
    def strip_context_tools(cls, *, meta: MetaInput = None) -> Stage:
        """Remove every tool request and response from the context; turns that
        held only those stay, emptied, so the context keeps its length."""
        return _made(context.StripContextTools(), meta)

    @classmethod
    def memory_recall(
        cls,
        memory: StageMemory,
        /,
        *,
        handling: Literal["replace", "merge"] = "replace",
        meta: MetaInput = None,
    ) -> Stage:
        """Recall a state from `memory`: `replace` the current state with it, or
        `merge` it in (contexts concatenated, results joined, its values added).

        Example: `Stage.memory_recall(Memory.volatile(StageState.empty), handling="merge")`
        """
        return _made(memory_nodes.MemoryRecall(memory, handling), meta)

    @classmethod
    def memory_remember(cls, memory: StageMemory, /, *, meta: MetaInput = None) -> Stage:
        """Remember the current state in `memory`; the state passes on unchanged."""
        return _made(memory_nodes.MemoryRemember(memory), meta)

    @classmethod
    def result_evaluation(
        cls,
        evaluator: evaluations.ResultEvaluator,
        /,
        *,
        raises: bool = False,
        meta: MetaInput = None,
    ) -> Stage:
        """Score the result with `evaluator(result)` (an `Evaluation`: score,
        threshold, passed). Below its threshold, fail with `EvaluationError`
        (its `meta` holds `evaluation_performance`, score / threshold x 100)
        if `raises`; else, as draive's default, pass the state on."""
        return _made(evaluations.ResultEvaluation(evaluator, _flag(raises, "raises")), meta)

    @classmethod
    def context_evaluation(
        cls,
        evaluator: evaluations.ContextEvaluator,
        /,
        *,
        raises: bool = False,
        meta: MetaInput = None,
    ) -> Stage:
        """Like `result_evaluation`, scoring the context with `evaluator(context)`."""
        return _made(evaluations.ContextEvaluation(evaluator, _flag(raises, "raises")), meta)

    @overload
    @classmethod
    def tool_call(
        cls, tool: Tool[Concatenate[ToolContext, P], object], /, *args: P.args, **kwargs: P.kwargs
    ) -> Stage: ...

    @overload
    @classmethod
    def tool_call(cls, tool: Tool[P, object], /, *args: P.args, **kwargs: P.kwargs) -> Stage: ...

    @classmethod
    def tool_call(cls, tool: Tool[..., object], /, *args: object, **kwargs: object) -> Stage:  # pyright: ignore[reportInconsistentOverload]  # pyright does not match `...` to Tool's invariant ParamSpec (Tool[Any, object] would pass, but puts Any in a public method's signature)
        """Call `tool` with keyword arguments and add the exchange to the
        context (a tool request, then its response), as if the model had asked;
        the result is untouched (a tool taking a `ToolContext` gets the stage's).
        Models expect tool turns between an input and an output: arrange the
        context around it.

        Example: `Stage.tool_call(get_weather, location="New York")`
        """
        if args:
            raise TypeError("Stage.tool_call takes the tool's arguments by keyword only")
        node = tool_calls.ToolCall(tool, dict(kwargs))
        return cls(node, StageMeta(values={"tool_call": node.tool.name}))

    @classmethod
    def sequence(cls, *stages: Stage, meta: MetaInput = None) -> Stage:
        """Run `stages` in order, each on the state the previous returned; stop at
        the first failure. Nested sequences are flattened, so any depth runs.

        Example: `Stage.sequence(analyze, summarize, format_as_bullets)`
        """
        _require_stages(stages, "Stage.sequence")
        return _made(_flat(stages), meta)

    @classmethod
    def loop(
        cls,
        stage: Stage,
        /,
        *stages: Stage,
        condition: flow.LoopCondition,
        mode: Literal["post_check", "pre_check"] = "post_check",
        max_iterations: int | None = None,
        meta: MetaInput = None,
    ) -> Stage:
        """Repeat the stages (as a sequence) while `condition(state=, iteration=)`
        holds; `iteration` is the number of finished runs. `post_check` (draive's
        `condition_check="after_execution"`) runs the body before the first
        check, `pre_check` (`"before_execution"`) checks first; `max_iterations`
        caps the runs. A condition that raises or returns a non-bool fails the
        stage with `StageExecutionError`.

        Example: `Stage.loop(refine, condition=below_three)` where
        `def below_three(*, state, iteration): return iteration < 3`.
        """
        body = (stage, *stages)
        _require_stages(body, "Stage.loop")
        flat = _flat(body)
        inner = flat.parts[0] if len(flat.parts) == 1 else flat
        return _made(flow.Loop(inner, condition, mode, max_iterations), meta)

    @classmethod
    def concurrent(
        cls,
        *stages: Stage,
        merge: fanout.Merge,
        concurrent_tasks: int | None = fanout.DEFAULT_CONCURRENT_TASKS,
        meta: MetaInput = None,
    ) -> Stage:
        """Run `stages` concurrently on the same state (at most `concurrent_tasks`
        at once: 2 by default, as in draive; None for no limit) and merge their
        outcomes, in order, into one state. `merge` receives each branch's
        `StageState | StageException` as `branches=` (draive's way) when it
        has a parameter of that name, else positionally; what it raises fails
        the stage. Token usage of every branch is kept.

        Example: `Stage.concurrent(aspect_a, aspect_b, merge=first_success)`
        """
        _require_stages(stages, "Stage.concurrent")
        return _made(
            fanout.Concurrent(tuple(s.node for s in stages), merge, concurrent_tasks), meta
        )

    @classmethod
    def router(
        cls, *stages: Stage, routing: _routing.Routing | None = None, meta: MetaInput = None
    ) -> Stage:
        """Run the one stage `routing(state=, options=)` names (`options` maps
        each name to its `StageMeta`); by default the Env's model picks, seeing
        each stage's name and description (`with_meta`), which all need. A
        router of one stage runs it without asking."""
        _require_stages(stages, "Stage.router")
        routes = tuple((s.meta, s.node) for s in stages)
        return _made(_routing.Router(routes, routing), meta)

    @classmethod
    def completion(
        cls,
        input: ContentElement,  # the spec's name
        /,
        *,
        instructions: str = "",
        tools: Iterable[Tool[..., object] | ToolSource] = (),
        output: OutputSelection = "auto",
        tool_rounds: int = DEFAULT_TOOL_ROUNDS,
        output_retries: int = 0,
        meta: MetaInput = None,
        **extra: object,
    ) -> Stage:
        """Add `input` to the context and ask the Env's model; tool calls are run
        (up to `tool_rounds` rounds) and the final output becomes the result.
        `output` asks for text, JSON, YAML or a type; `extra` goes to the provider.
        With `output_retries=n`, output that does not validate is sent back to
        the model with the validation errors as a new input, and it is asked
        again, up to n times (each retry's usage counts and is traced).

        Fails with `MissingEnvironmentError` (no model in the Env), a
        `ModelError` subclass (the provider failed), `OutputValidationError`
        (output that does not parse), `ToolError` or `ToolRoundsExceededError`.

        Example: `Stage.completion("List three languages.", output="json")`
        """
        settings = completions.Settings.of(
            instructions=instructions,
            tools=tools,
            output=output,
            tool_rounds=tool_rounds,
            extra=extra,
            output_retries=output_retries,
        )
        return _made(completions.Completion.of(input, settings), meta)

    @classmethod
    def prompting_completion(
        cls,
        input: Callable[[], ContentElement | Awaitable[ContentElement]],  # the spec's name
        /,
        *,
        instructions: str = "",
        tools: Iterable[Tool[..., object] | ToolSource] = (),
        output: OutputSelection = "auto",
        tool_rounds: int = DEFAULT_TOOL_ROUNDS,
        output_retries: int = 0,
        meta: MetaInput = None,
        **extra: object,
    ) -> Stage:
        """Like `completion`, with the input fetched by `input()` at run time."""
        settings = completions.Settings.of(
            instructions=instructions,
            tools=tools,
            output=output,
            tool_rounds=tool_rounds,
            extra=extra,
            output_retries=output_retries,
        )
        return _made(completions.PromptingCompletion(settings, input), meta)

    @classmethod
    def loopback_completion(
        cls,
        *,
        instructions: str = "",
        tools: Iterable[Tool[..., object] | ToolSource] = (),
        output: OutputSelection = "auto",
        tool_rounds: int = DEFAULT_TOOL_ROUNDS,
        output_retries: int = 0,
        meta: MetaInput = None,
        **extra: object,
    ) -> Stage:
        """Give the model its last output back as the input (replacing the last
        exchange) and ask again: iterative refinement."""
        settings = completions.Settings.of(
            instructions=instructions,
            tools=tools,
            output=output,
            tool_rounds=tool_rounds,
            extra=extra,
            output_retries=output_retries,
        )
        return _made(completions.LoopbackCompletion(settings), meta)

    @classmethod
    def result_completion(
        cls,
        *,
        instructions: str = "",
        tools: Iterable[Tool[..., object] | ToolSource] = (),
        output: OutputSelection = "auto",
        tool_rounds: int = DEFAULT_TOOL_ROUNDS,
        output_retries: int = 0,
        meta: MetaInput = None,
        **extra: object,
    ) -> Stage:
        """Like `completion`, with the current result as the input."""
        settings = completions.Settings.of(
            instructions=instructions,
            tools=tools,
            output=output,
            tool_rounds=tool_rounds,
            extra=extra,
            output_retries=output_retries,
        )
        return _made(completions.ResultCompletion(settings), meta)

    # Modifiers ----------------------------------------------------------------

    def with_meta(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        tags: Iterable[str] | None = None,
        **values: AttributeValue,
    ) -> Stage:
        """Name, describe and tag the stage; a name also prefixes failure paths.
        Given tags replace the stage's tags."""
        updated = StageMeta(
            name=self.meta.name if name is None else name,
            description=self.meta.description if description is None else description,
            values={**self.meta.values, **values},
            tags=self.meta.tags if tags is None else tuple(tags),
        )
        if name is None:
            return Stage(self.node, updated)
        return Stage(naming.Named(self.node, name), updated)

    def when(
        self,
        condition: bool | control.StateCondition,
        *,
        alternative: Stage | None = None,
    ) -> Stage:
        """Run this stage only if `condition` (a bool or `(*, state) -> bool`)
        holds; otherwise run `alternative`, or pass the state on."""
        other = None if alternative is None else alternative.node
        return self._wrapped(control.When(self.node, condition, other))

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
        return self._wrapped(cached.Cached(self.node, limit, expiration, key))

    def cached_externally(
        self,
        *,
        make_key: external.CacheKeyMaking[Key],
        read: external.CacheReading[Key],
        write: external.CacheWriting[Key],
    ) -> Stage:
        """Cache in your own store, as draive's `cached_externally`: a state
        `read(make_key(state=...))` finds is the outcome (nothing runs, nothing
        is spent); else the stage runs and `write(key, state)` keeps its
        successful state. Each callable may be sync or async.

        Example: `stage.cached_externally(make_key=by_result, read=redis_get, write=redis_set)`
        """
        return self._wrapped(external.CachedExternally(self.node, make_key, read, write))

    def with_retry(
        self,
        *,
        limit: int = 1,
        delay: control.Delay = None,
        catching: control.Catching = Exception,
    ) -> Stage:
        """On a failure matching `catching`, run again up to `limit` more times;
        the usage of every attempt counts. `catching` is exception types (a
        type, tuple or set) or a predicate, which sees what a type is matched
        against: the exception user code (or a model) raised, else the
        `StageException`."""
        return self._wrapped(control.Retry(self.node, limit, delay, catching))

    def with_fallback(self, fallback: Stage, *, catching: control.Catching = Exception) -> Stage:
        """On a failure matching `catching` (exception types: a type, tuple or
        set; or a predicate, as for `with_retry`), run `fallback` on the same
        input (plus the usage the failed run spent)."""
        return self._wrapped(control.Fallback(self.node, fallback.node, catching))

    def with_timeout(self, seconds: float) -> Stage:
        """Fail with `StageTimeoutError` if the stage runs longer than `seconds`."""
        return self._wrapped(control.Timeout(self.node, seconds))

    def with_volatile_context(self) -> Stage:
        """Keep this stage's result but not its changes to the context."""
        return self._wrapped(context.VolatileContext(self.node))

    def with_volatile_tools_context(self) -> Stage:
        """Keep this stage's context changes except the tool turns it added."""
        return self._wrapped(context.VolatileToolsContext(self.node))

    def ignore_result(self) -> Stage:
        """Keep this stage's context changes but not its result."""
        return self._wrapped(context.IgnoreResult(self.node))

    def extend_result(self) -> Stage:
        """Append this stage's result to the previous one instead of replacing it."""
        return self._wrapped(context.ExtendResult(self.node))

    def with_ctx(self, *values: object) -> Stage:
        """Run this stage with `values` added to its Env: everything it runs
        (models, tools, custom stages taking `env`) finds them with
        `env.get(T)`. Without values, the stage itself.

        Example: `Stage.completion("Hi").with_ctx(Tenant("acme"))`
        """
        if not values:
            return self
        return self._wrapped(WithCtx(self.node, values))

    def traced(self, *, label: str | None = None) -> Stage:
        """Record a span for each run (named `label`, else the stage's name)."""
        name = label or self.meta.name or "stage"
        # Around a plain leaf, a leaf with a span; around anything else (another
        # traced leaf included: no recursion per layer), a node with a frame.
        plain = self.node.leaf and not isinstance(self.node, naming.TracedLeaf)
        kind = naming.TracedLeaf if plain else naming.Traced
        return self._wrapped(kind(self.node, name, dict(self.meta.values)))

    # Running ------------------------------------------------------------------

    def run(
        self, state: StageState | None = None
    ) -> RequiresContextFutureResult[StageState, StageException, Env]:
        """The effect of running this stage on `state`: give it an `Env`, await it."""
        initial = StageState.empty if state is None else state
        node = self.node

        def effect(env: Env) -> FutureResult[StageState, StageException]:
            return FutureResult(_as_result(node, initial, env))

        return RequiresContextFutureResult(effect)

    async def attempt(
        self,
        state: StageState | None = None,
        *,
        env: Env | None = None,
        memory: StageMemory | ModelContext | None = None,
    ) -> Result[StageState, StageException]:
        """Run on `state` (default: empty) in `env` (default: the ambient one, else
        the default Env) and give the `Result`: `Success(state)` or
        `Failure(StageException)`. Only cancellation escapes.

        `memory`: a context to start from (it replaces the state's), or a
        `StageMemory`: its recalled context comes first, and the final state
        is remembered after a success."""
        return await _as_result(self.node, state, resolved(env), memory)

    async def execute(
        self,
        state: StageState | None = None,
        *,
        env: Env | None = None,
        memory: StageMemory | ModelContext | None = None,
    ) -> StageState:
        """Like `attempt`, but return the final state or raise the `StageException`.

        Example: `state = await pipeline.execute(env=Env.of(ScriptedModel("hi")))`
        """
        if memory is None:
            initial = StageState.empty if state is None else state
            outcome = await interpret(self.node, initial, resolved(env))
        else:
            outcome = await _with_memory(self.node, state, resolved(env), memory)
        if isinstance(outcome, StageException):
            raise outcome
        return outcome

    def stream(
        self, state: StageState | None = None, *, env: Env | None = None
    ) -> AsyncGenerator[StageEvent]:
        """Run as `attempt` would, yielding events while it runs: `TextDelta`s
        as the model writes, `PartialOutput`, `ToolCalled`, `ToolAnswered`,
        `Retrying`, and always last `Finished`, whose `outcome` is what
        `attempt` gives. Nothing but cancellation is raised.

        Iterate inside `contextlib.aclosing(...)`, from one task: leaving the
        loop then cancels the run at once (its model streams closed, no task left).

        Example:
            ```python
            async with contextlib.aclosing(pipeline.stream(state)) as events:
                async for event in events:
                    if isinstance(event, TextDelta):
                        print(event.text, end="")
            ```
        """
        initial = StageState.empty if state is None else state
        return stream_run(self.node, initial, resolved(env))

    # Many inputs --------------------------------------------------------------

    async def batch(
        self,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        concurrency: int = 8,
        env: Env | None = None,
        progress: bool | Callable[[BatchProgress], object] = False,
    ) -> BatchResults:
        """Run this stage on every input (a `StageState`, or content that becomes
        the initial result), at most `concurrency` at once, and give every
        outcome as a `Result`, in input order; `.summary` counts them.

        Inputs are read lazily (any iterable or async iterable): memory grows
        with `concurrency`, not with the number of inputs. One item's failure
        never stops the others; cancelling the caller cancels every item in
        flight. `progress=True` draws a rich progress bar on a terminal;
        a callable receives a `BatchProgress` as items start and finish.

        Example: `outcomes = await pipeline.batch(tickets, concurrency=32, env=env)`
        """
        return await batches.batch(
            self.node, inputs, concurrency=concurrency, env=resolved(env), progress=progress
        )

    def map(
        self,
        inputs: Iterable[BatchInput] | AsyncIterable[BatchInput],
        *,
        concurrency: int = 8,
        env: Env | None = None,
        progress: bool | Callable[[BatchProgress], object] = False,
    ) -> AsyncGenerator[tuple[int, Result[StageState, StageException]]]:
        """Like `batch`, yielding `(input index, outcome)` as items finish.

        To stop early, iterate inside `contextlib.aclosing(pipeline.map(...))`:
        the items still in flight are then cancelled at once.
        """
        return batches.map_over(
            self.node, inputs, concurrency=concurrency, env=resolved(env), progress=progress
        )


Stage.noop = Stage(flow.Noop())


def _flat(stages: tuple[Stage, ...]) -> flow.Sequence:
    """One sequence node of `stages`, nested unnamed sequences spliced in."""
    parts: list[Node] = []
    for item in stages:
        node = item.node
        if isinstance(node, flow.Sequence):
            parts.extend(node.parts)
        elif not isinstance(node, flow.Noop):
            parts.append(node)
    return flow.Sequence(tuple(parts))


async def _as_result(
    node: Node,
    state: StageState | None,
    env: Env,
    memory: StageMemory | ModelContext | None = None,
) -> Result[StageState, StageException]:
    if memory is None:
        outcome = await interpret(node, StageState.empty if state is None else state, env)
    else:
        outcome = await _with_memory(node, state, env, memory)
    if isinstance(outcome, StageException):
        return Failure(outcome)
    return Success(outcome)


async def _with_memory(
    node: Node, state: StageState | None, env: Env, memory: StageMemory | ModelContext
) -> StageState | StageException:
    """Run `node` from `memory`: a context replaces the state's; a memory's
    recalled context goes before the state's, and the final state is remembered."""
    initial = StageState.empty if state is None else state
    if isinstance(memory, tuple | list):
        return await interpret(node, initial.updated(context=memory), env)
    try:
        recalled = cast(object, await memory.recall())  # the user's: anything
        if not isinstance(recalled, StageState):
            raise TypeError(f"memory recall must give a StageState, got {type(recalled).__name__}")
    except Exception as error:
        return StageExecutionError.wrap(error, initial)
    initial = initial.updated(context=(*recalled.context, *initial.context))
    outcome = await interpret(node, initial, env)
    if isinstance(outcome, StageException):
        return outcome
    try:
        await memory.remember(outcome)
    except Exception as error:
        return StageExecutionError.wrap(error, outcome)
    return outcome


def _flag(value: object, what: str) -> bool:
    if value is not True and value is not False:
        raise TypeError(f"{what} must be a bool, got {value!r}")
    return value


def _require_stages(stages: tuple[object, ...], what: str) -> None:
    if not stages:
        raise ValueError(f"{what} needs at least one stage")
    for position, item in enumerate(stages):
        if not isinstance(item, Stage):
            raise TypeError(f"{what}: argument {position} is {type(item).__name__}, not a Stage")


@overload
def stage(function: leaves.StageFunction, /, *, meta: MetaInput = None) -> Stage: ...


@overload
def stage(function: leaves.StageFunctionWithEnv, /, *, meta: MetaInput = None) -> Stage: ...


@overload
def stage(*, meta: MetaInput = None) -> Callable[[leaves.AnyStageFunction], Stage]: ...


def stage(
    function: leaves.StageFunction | leaves.StageFunctionWithEnv | None = None,
    /,
    *,
    meta: MetaInput = None,
) -> Stage | Callable[[leaves.AnyStageFunction], Stage]:
    """Turn `async def f(*, state: StageState[, env: Env]) -> StageState` into a
    Stage. `f` may also return a `Result`/`FutureResult`; what it raises becomes
    a `StageExecutionError` carrying the input state. A sync function is refused
    with `TypeError`. `@stage(meta=...)` also names, describes or tags it.

    Example:
        ```python
        @stage
        async def tag(*, state: StageState) -> StageState:
            return state.updated(result=f"[{state.result.as_string()}]")
        ```
    """
    if function is None:

        def decorate(decorated: leaves.AnyStageFunction) -> Stage:
            return _made(leaves.Custom.of(decorated), meta)

        return decorate
    return _made(leaves.Custom.of(function), meta)
