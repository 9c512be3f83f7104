"""Evaluation nodes: score the result or the context, and fail below the threshold."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import ClassVar, TypeAlias, final

import attrs

from stagefx._core.content import MultimodalContent
from stagefx._core.conversation import ModelContext
from stagefx._core.errors import EvaluationError
from stagefx._core.meta import AttributeValue
from stagefx._core.scores import Evaluation, performance
from stagefx._core.state import StageState
from stagefx._env.env import Env
from stagefx._env.tracing import annotate
from stagefx._runtime.node import Node, Outcome, SpanSpec
from stagefx._runtime.user_code import failure, require_callable, resolve

__all__ = ["ContextEvaluation", "ContextEvaluator", "ResultEvaluation", "ResultEvaluator"]

ResultEvaluator: TypeAlias = Callable[[MultimodalContent], Evaluation | Awaitable[Evaluation]]
"""Scores a result: `(result) -> Evaluation`, sync or async."""

ContextEvaluator: TypeAlias = Callable[[ModelContext], Evaluation | Awaitable[Evaluation]]
"""Scores a context: `(context) -> Evaluation`, sync or async."""


def _checked(evaluation: object) -> Evaluation:
    """`evaluation` if it is one: numeric score and threshold, a bool `passed`."""
    try:
        score = getattr(evaluation, "score")  # noqa: B009  # any object may claim to be one
        threshold = getattr(evaluation, "threshold")  # noqa: B009
        passed = getattr(evaluation, "passed")  # noqa: B009
    except AttributeError:
        raise TypeError(
            f"an evaluator must return an evaluation (score, threshold, passed), "
            f"got {type(evaluation).__name__}"
        ) from None
    for name, value in (("score", score), ("threshold", threshold)):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"an evaluation's {name} must be a number, got {value!r}")
    if passed is not True and passed is not False:
        raise TypeError(f"an evaluation's passed must be a bool, got {passed!r}")
    return evaluation  # type: ignore[return-value]  # checked just above


class _Evaluating(Node):
    """Shared by both: evaluate, annotate the span, pass or fail."""

    __slots__ = ()

    leaf: ClassVar[bool] = True
    what: ClassVar[str]
    raises: bool

    def details(self) -> Mapping[str, AttributeValue]:
        return {"raises": self.raises}

    def span(self) -> SpanSpec:
        return (self.kind, None)

    def evaluated(self, state: StageState) -> object:
        raise NotImplementedError

    async def run(self, state: StageState, env: Env) -> Outcome:
        try:
            evaluation = _checked(await resolve(self.evaluated(state)))
            relative = performance(evaluation)
        except Exception as error:
            return failure(error, state)
        annotate("evaluation_score", float(evaluation.score))
        annotate("evaluation_passed", evaluation.passed)
        if evaluation.passed or not self.raises:
            return state
        report = getattr(evaluation, "report", None)
        try:
            told = report() if callable(report) else None
        except Exception:
            told = None
        return EvaluationError(
            f"{self.what} evaluation failed with relative score: {relative:.2f}%",
            state=state,
            meta={
                "evaluation_performance": relative,
                "evaluation_score": float(evaluation.score),
                "evaluation_threshold": float(evaluation.threshold),
                "evaluation_report": told if isinstance(told, str) else repr(evaluation),
                "evaluation": evaluation,
            },
        )


# Passed to attrs.field: pyright cannot type attrs' `@field.validator` decorators.
def _check_result_evaluator(_: object, __: object, value: ResultEvaluator) -> None:
    require_callable(value, "Stage.result_evaluation")


def _check_context_evaluator(_: object, __: object, value: ContextEvaluator) -> None:
    require_callable(value, "Stage.context_evaluation")


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class ResultEvaluation(_Evaluating):
    """Evaluate the result; below the threshold fail with `EvaluationError` if
    `raises`, else pass the state on (draive's default)."""

    kind: ClassVar[str] = "result_evaluation"
    what: ClassVar[str] = "Result"

    evaluator: ResultEvaluator = attrs.field(validator=_check_result_evaluator)
    raises: bool

    def evaluated(self, state: StageState) -> object:
        return self.evaluator(state.result)


@final
@attrs.frozen(slots=True, eq=False, repr=False)
class ContextEvaluation(_Evaluating):
    """Evaluate the context; below the threshold fail with `EvaluationError` if
    `raises`, else pass the state on (draive's default)."""

    kind: ClassVar[str] = "context_evaluation"
    what: ClassVar[str] = "Context"

    evaluator: ContextEvaluator = attrs.field(validator=_check_context_evaluator)
    raises: bool

    def evaluated(self, state: StageState) -> object:
        return self.evaluator(state.context)
