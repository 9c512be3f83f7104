"""Evaluations: a score against a threshold, for `result_evaluation` and
`context_evaluation`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Protocol, final, runtime_checkable

import attrs

__all__ = ["Evaluation", "EvaluatorResult", "performance"]


@runtime_checkable
class Evaluation(Protocol):
    """What an evaluator returns: a `score`, the `threshold` it is held to, and
    whether it `passed`. `EvaluatorResult` is one; so is draive's."""

    @property
    def score(self) -> float: ...

    @property
    def threshold(self) -> float: ...

    @property
    def passed(self) -> bool: ...


def performance(evaluation: Evaluation) -> float:
    """The score relative to the threshold in percent, as draive reports it
    (score x 100 when the threshold is not positive)."""
    score, threshold = float(evaluation.score), float(evaluation.threshold)
    if threshold <= 0:
        return score * 100.0
    return (score / threshold) * 100.0


def _finite(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"EvaluatorResult {attribute.name} must be a finite number, got {value!r}")


@final
@attrs.frozen(slots=True)
class EvaluatorResult:
    """One evaluator's verdict: `passed` when `score >= threshold`.

    Example: `EvaluatorResult.of("conciseness", score=0.8, threshold=0.5).passed`
    """

    evaluator: str
    score: float = attrs.field(validator=_finite)
    threshold: float = attrs.field(validator=_finite)
    meta: Mapping[str, object] = attrs.field(factory=dict)  # pyright: ignore[reportUnknownVariableType]  # it reads factory=dict as dict[Unknown, Unknown]; the annotation is the type

    @classmethod
    def of(
        cls,
        evaluator: str,
        /,
        *,
        score: float,
        threshold: float,
        meta: Mapping[str, object] | None = None,
    ) -> EvaluatorResult:
        """draive's spelling: `EvaluatorResult.of(name, score=..., threshold=...)`."""
        return cls(evaluator, score, threshold, {} if meta is None else dict(meta))

    @property
    def passed(self) -> bool:
        return self.score >= self.threshold

    @property
    def performance(self) -> float:
        """`score / threshold x 100` (see `performance`)."""
        return performance(self)

    def report(self) -> str:
        """One line: the evaluator, its score, its threshold, and the verdict."""
        verdict = "passed" if self.passed else "failed"
        return (
            f"{self.evaluator}: score {self.score:g} against threshold {self.threshold:g}, "
            f"{verdict} ({self.performance:.2f}%)"
        )
