"""stagefx: a typed functional-effects DSL for LLM pipelines."""

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
from stagefx.stage import Stage, StageMeta, stage
from stagefx.state import StageState
from stagefx.tracing import NoopTracer, RecordingTracer, SpanRecord, Tracer

__all__ = [
    "ArtifactContent",
    "Clock",
    "ContentElement",
    "ContentPart",
    "Env",
    "ImageContent",
    "MissingEnvironmentError",
    "ModelAuthenticationError",
    "ModelContext",
    "ModelContextTooLongError",
    "ModelError",
    "ModelInput",
    "ModelInvalidRequestError",
    "ModelOutput",
    "ModelRateLimitError",
    "ModelRefusalError",
    "ModelToolRequest",
    "ModelToolResponse",
    "ModelUnavailableError",
    "MultimodalContent",
    "NoopTracer",
    "OutputValidationError",
    "RecordingTracer",
    "ResourceContent",
    "RoutingError",
    "SpanRecord",
    "Stage",
    "StageException",
    "StageExecutionError",
    "StageMeta",
    "StageState",
    "StageTimeoutError",
    "SystemClock",
    "TextContent",
    "TokenUsage",
    "ToolError",
    "ToolRoundsExceededError",
    "Tracer",
    "ctx",
    "stage",
]
