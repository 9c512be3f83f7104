"""StageException and its closed family of failures.

Every failure carries the last good `StageState` (the input of the stage that
failed) and the name path of that stage, outermost first. Inside the library
failures travel as values; only `Stage.execute` raises them.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

from stagefx._core.secrets import scrub
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals

__all__ = [
    "describe_error",
    "EvaluationError",
    "MissingEnvironmentError",
    "ModelAuthenticationError",
    "ModelContextTooLongError",
    "ModelError",
    "ModelInvalidRequestError",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelUnavailableError",
    "OutputValidationError",
    "RoutingError",
    "StageException",
    "StageExecutionError",
    "StageTimeoutError",
    "ToolError",
    "ToolRoundsExceededError",
]


def describe_error(error: BaseException) -> str:
    """`Type: message` for any exception, even one whose `__str__` raises."""
    try:
        told = str(error)
    except Exception:
        told = "<unprintable message>"
    return f"{type(error).__name__}: {told}" if told else type(error).__name__


class StageException(Exception):
    """A stage failed. `state` is the last good state (holding the usage spent
    so far, `usage`); `stage_path` names where; `meta` holds what the failure
    reports beyond its message (an evaluation's performance, say)."""

    def __init__(
        self,
        message: str,
        *,
        state: StageState,
        stage_path: tuple[str, ...] = (),
        meta: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.state = state
        self.stage_path = stage_path
        self.meta: Mapping[str, object] = {} if meta is None else dict(meta)

    @property
    def usage(self) -> UsageTotals:
        """The tokens spent up to this failure (kept in its state)."""
        return self.state.get(UsageTotals, UsageTotals())

    def scrubbed(self, secrets: tuple[str, ...]) -> StageException:
        """A copy whose message holds none of `secrets` (nor anything else
        stagefx's secret policy keeps out): failure messages reach logs, spans
        and people. The cause it chains to is the original."""
        message = scrub(self.message, secrets)
        if message == self.message:
            return self
        scrubbed = copy.copy(self)
        scrubbed.message = message
        scrubbed.args = (message,)
        scrubbed.__cause__ = self.__cause__
        scrubbed.__context__ = self.__context__
        scrubbed.__traceback__ = self.__traceback__
        return scrubbed

    def located(self, name: str) -> StageException:
        """A copy whose path starts with `name` (the enclosing named stage)."""
        located = copy.copy(self)
        located.stage_path = (name, *self.stage_path)
        located.__cause__ = self.__cause__
        located.__context__ = self.__context__
        located.__traceback__ = self.__traceback__
        return located

    def __str__(self) -> str:
        if self.stage_path:
            return f"[{' > '.join(self.stage_path)}] {self.message}"
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild, (type(self), self.__dict__))


def _rebuild(cls: type[StageException], fields: dict[str, object]) -> StageException:
    exception = cls.__new__(cls)
    Exception.__init__(exception, fields.get("message", ""))
    exception.__dict__.update(fields)
    if "meta" not in fields:  # pickled before failures had meta
        exception.meta = {}
    return exception


class StageExecutionError(StageException):
    """User code (a callback, a custom stage, a tool) raised; `__cause__` is the original."""

    @classmethod
    def wrap(cls, error: Exception, state: StageState) -> StageException:
        """`error` as a failure value; a `StageException` passes through unchanged."""
        if isinstance(error, StageException):
            return error
        wrapped = cls(
            scrub(describe_error(error)), state=state
        )  # credentials of the environment out
        wrapped.__cause__ = error
        return wrapped


class EvaluationError(StageException):
    """`result_evaluation` / `context_evaluation` (with `raises=True`) found the
    stage's output below its threshold. `meta` holds `evaluation_performance`
    (score / threshold x 100, as draive reports it), `evaluation_score`,
    `evaluation_threshold` and `evaluation_report`."""


class StageTimeoutError(StageException):
    """A stage under `with_timeout` ran past its time."""


class MissingEnvironmentError(StageException):
    """No `Env` (or a provider it needs) was given to the running stage."""


class RoutingError(StageException):
    """A router could not choose one of its routes."""


class ModelError(StageException):
    """The model provider failed; subclasses say how."""


class ModelRateLimitError(ModelError):
    """The provider is rate limiting; `retry_after` is its advice in seconds, if given."""

    def __init__(
        self,
        message: str,
        *,
        state: StageState,
        stage_path: tuple[str, ...] = (),
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, state=state, stage_path=stage_path)
        self.retry_after = retry_after


class ModelUnavailableError(ModelError):
    """The provider could not answer (5xx, timeouts, dropped connections, bad bodies)."""


class ModelRefusalError(ModelError):
    """The model refused to answer."""


class ModelContextTooLongError(ModelError):
    """The request's context is longer than the model accepts."""


class ModelInvalidRequestError(ModelError):
    """The provider rejected the request as invalid."""


class ModelAuthenticationError(ModelError):
    """The provider rejected the credentials."""


class OutputValidationError(StageException):
    """Model output did not parse or validate as the requested output; `raw` is the text."""

    def __init__(
        self, message: str, *, state: StageState, raw: str, stage_path: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message, state=state, stage_path=stage_path)
        self.raw = raw


class ToolError(StageException):
    """A tool failed in a way that must stop the pipeline."""


class ToolRoundsExceededError(StageException):
    """The model kept asking for tools past the allowed number of rounds."""
