"""Evaluation nodes: score the result or the context, and fail below the threshold."""

from __future__ import annotations

import pytest

from stagefx import (
    Env,
    EvaluationError,
    EvaluatorResult,
    ModelContext,
    ModelInput,
    ModelOutput,
    MultimodalContent,
    Stage,
    StageExecutionError,
    StageState,
)

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]

ENV = Env.of()


async def test_result_evaluation_passes_or_fails_with_the_evaluation_in_meta() -> None:
    def by_length(result: MultimodalContent) -> EvaluatorResult:
        return EvaluatorResult.of("length", score=len(result.as_string()), threshold=4)

    state = StageState(result="abc")
    assert await Stage.result_evaluation(by_length).execute(state, env=ENV) == state  # draive
    passing = StageState(result="abcd")
    assert await Stage.result_evaluation(by_length, raises=True).execute(passing) == passing
    error = (await Stage.result_evaluation(by_length, raises=True).attempt(state)).failure()
    assert isinstance(error, EvaluationError)
    assert str(error) == "Result evaluation failed with relative score: 75.00%"
    assert error.meta["evaluation_performance"] == 75.0
    assert error.meta["evaluation_score"] == 3.0
    assert error.meta["evaluation_threshold"] == 4.0
    assert "length: score 3 against threshold 4, failed" in str(error.meta["evaluation_report"])
    assert error.state == state


async def test_context_evaluation_scores_the_context() -> None:
    async def enough_turns(context: ModelContext) -> EvaluatorResult:
        return EvaluatorResult.of("turns", score=len(context), threshold=2)

    judged = Stage.context_evaluation(enough_turns, raises=True)
    error = (await judged.attempt(StageState(context=(ModelInput.of("a"),)))).failure()
    assert isinstance(error, EvaluationError)
    assert error.message.startswith("Context evaluation failed with relative score: 50.00%")
    two = StageState(context=(ModelInput.of("a"), ModelOutput.of("b")))
    assert await judged.execute(two) == two
    assert judged.describe().kind == "context_evaluation"


async def test_an_evaluator_returning_no_evaluation_fails_clearly() -> None:
    def wrong(result: MultimodalContent) -> float:
        return 1.0

    error = (await Stage.result_evaluation(wrong).attempt()).failure()  # type: ignore[arg-type]  # the mistake under test
    assert isinstance(error, StageExecutionError)
    assert "score, threshold, passed" in str(error)
