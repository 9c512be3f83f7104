"""stagefx: a typed functional-effects DSL for LLM pipelines.

The public names live here; the modules behind them are private (`stagefx._...`)
and each name reports `stagefx` as its module.
"""

from stagefx._batch import BatchProgress, BatchResults
from stagefx._cache_store import CacheStore, MemoryCacheStore
from stagefx._clock import Clock, SystemClock
from stagefx._content import (
    ArtifactContent,
    ContentElement,
    ContentPart,
    ImageContent,
    MultimodalContent,
    ResourceContent,
    TextContent,
)
from stagefx._conversation import (
    ModelContext,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    RateLimitHint,
    TokenUsage,
)
from stagefx._env import Env, ctx
from stagefx._errors import (
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
from stagefx._evaluation import Evaluation, EvaluatorResult
from stagefx._events import (
    Finished,
    PartialOutput,
    Retrying,
    StageEvent,
    TextDelta,
    ToolAnswered,
    ToolCalled,
)
from stagefx._memory import Memory, StageMemory
from stagefx._model import (
    GenerativeModel,
    ModelFailure,
    ModelRequest,
    ModelStream,
    ModelStreamItem,
    OutputSpec,
    ToolSpec,
)
from stagefx._model_call import LAYER_ORDER, CallLayer, ModelPath
from stagefx._public import publish as _publish
from stagefx._rate_limits import RateLimits
from stagefx._stage import Stage, StageMeta, stage
from stagefx._state import StageState
from stagefx._structure import StageNode
from stagefx._tools import Tool, ToolContext, ToolSource, tool
from stagefx._trace_view import format_trace, trace_tree
from stagefx._tracing import NoopTracer, RecordingTracer, SpanRecord, Tracer
from stagefx._usage import UsageTotals

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
