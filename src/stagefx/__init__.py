"""stagefx: a typed functional-effects DSL for LLM pipelines."""

from stagefx.cache_store import CacheStore, MemoryCacheStore
from stagefx.clock import Clock, SystemClock
from stagefx.content import (
    ArtifactContent,
    ContentElement,
    ContentPart,
    ImageContent,
    MultimodalContent,
    ResourceContent,
    TextContent,
)
from stagefx.conversation import (
    ModelContext,
    ModelInput,
    ModelOutput,
    ModelToolRequest,
    ModelToolResponse,
    TokenUsage,
)
from stagefx.env import Env, ctx
from stagefx.errors import (
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
from stagefx.model import GenerativeModel, ModelFailure, ModelRequest, OutputSpec, ToolSpec
from stagefx.stages import Stage, StageMeta, stage
from stagefx.state import StageState
from stagefx.structure import StageNode
from stagefx.tools import Tool, tool
from stagefx.trace_view import format_trace, trace_tree
from stagefx.tracing import NoopTracer, RecordingTracer, SpanRecord, Tracer
from stagefx.usage import UsageTotals

__all__ = [
    "ArtifactContent",
    "CacheStore",
    "Clock",
    "ContentElement",
    "ContentPart",
    "Env",
    "GenerativeModel",
    "ImageContent",
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
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelRequest",
    "ModelToolRequest",
    "ModelToolResponse",
    "ModelUnavailableError",
    "MultimodalContent",
    "NoopTracer",
    "OutputSpec",
    "OutputValidationError",
    "RecordingTracer",
    "ResourceContent",
    "RoutingError",
    "SpanRecord",
    "Stage",
    "StageException",
    "StageExecutionError",
    "StageMeta",
    "StageNode",
    "StageState",
    "StageTimeoutError",
    "SystemClock",
    "TextContent",
    "TokenUsage",
    "Tool",
    "ToolError",
    "ToolRoundsExceededError",
    "ToolSpec",
    "Tracer",
    "UsageTotals",
    "ctx",
    "format_trace",
    "stage",
    "tool",
    "trace_tree",
]
