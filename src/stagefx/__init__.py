"""stagefx: a typed functional-effects DSL for LLM pipelines.

The public names live here; the modules behind them are private (`stagefx._...`)
and each name reports `stagefx` as its module.
"""

from stagefx._core.content import (
    ArtifactContent,
    ContentElement,
    ContentPart,
    ImageContent,
    MultimodalContent,
    ResourceContent,
    TextContent,
)
from stagefx._core.conversation import (
    ModelContext,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    RateLimitHint,
    TokenUsage,
)
from stagefx._core.errors import (
    EvaluationError,
    MissingEnvironmentError,
    ModelAuthenticationError,
    ModelContextTooLongError,
    ModelError,
    ModelInvalidRequestError,
    ModelRateLimitError,
    ModelRefusalError,
    ModelUnavailableError,
    OutputValidationError,
    RoutingError,
    StageException,
    StageExecutionError,
    StageTimeoutError,
    ToolError,
    ToolRoundsExceededError,
)
from stagefx._core.request import ModelFailure, ModelRequest, OutputSpec, ToolSpec
from stagefx._core.scores import Evaluation, EvaluatorResult
from stagefx._core.state import StageState
from stagefx._core.usage import UsageTotals
from stagefx._env.cache_store import CacheStore, MemoryCacheStore
from stagefx._env.clock import Clock, SystemClock
from stagefx._env.env import Env, ctx
from stagefx._env.events import (
    Finished,
    PartialOutput,
    Retrying,
    StageEvent,
    TextDelta,
    ToolAnswered,
    ToolCalled,
)
from stagefx._env.memory import Memory, StageMemory
from stagefx._env.trace_view import format_trace, trace_tree
from stagefx._env.tracing import NoopTracer, RecordingTracer, SpanRecord, Tracer
from stagefx._model.boundary import LAYER_ORDER, CallLayer, ModelPath
from stagefx._model.generative import GenerativeModel, ModelStream, ModelStreamItem
from stagefx._model.rate_limits import RateLimits
from stagefx._model.tools import Tool, ToolContext, ToolSource, tool
from stagefx._public import publish as _publish
from stagefx._runtime.batch import BatchProgress, BatchResults
from stagefx._runtime.outline import StageNode
from stagefx._runtime.stage import Stage, StageMeta, stage

__all__ = [
    "ArtifactContent",
    "BatchProgress",
    "BatchResults",
    "CacheStore",
    "CallLayer",
    "Clock",
    "ContentElement",
    "ContentPart",
    "Env",
    "Evaluation",
    "EvaluationError",
    "EvaluatorResult",
    "Finished",
    "GenerativeModel",
    "ImageContent",
    "LAYER_ORDER",
    "Memory",
    "MemoryCacheStore",
    "MissingEnvironmentError",
    "ModelAuthenticationError",
    "ModelContext",
    "ModelContextTooLongError",
    "ModelError",
    "ModelFailure",
    "ModelInput",
    "ModelInvalidRequestError",
    "ModelOutput",
    "ModelPath",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelRequest",
    "ModelStream",
    "ModelStreamItem",
    "ModelToolRequest",
    "ModelToolResponse",
    "ModelUnavailableError",
    "MultimodalContent",
    "NoopTracer",
    "OutputSpec",
    "OutputValidationError",
    "PartialOutput",
    "RateLimitHint",
    "RateLimits",
    "RecordingTracer",
    "ResourceContent",
    "Retrying",
    "RoutingError",
    "SpanRecord",
    "Stage",
    "StageEvent",
    "StageException",
    "StageExecutionError",
    "StageMemory",
    "StageMeta",
    "StageNode",
    "StageState",
    "StageTimeoutError",
    "SystemClock",
    "TextContent",
    "TextDelta",
    "TokenUsage",
    "Tool",
    "ToolAnswered",
    "ToolCalled",
    "ToolContext",
    "ToolError",
    "ToolRoundsExceededError",
    "ToolSource",
    "ToolSpec",
    "Tracer",
    "UsageTotals",
    "ctx",
    "format_trace",
    "stage",
    "tool",
    "trace_tree",
]


_publish(__name__, globals(), __all__)
