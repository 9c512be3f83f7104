"""The demo: the Stage guide's end-to-end document pipeline, through a real
provider, its summary streamed to the terminal as the model writes it; then
the same pipeline over a small dataset with `batch`.

It runs on whichever provider has a key set: OPENAI_API_KEY, else
ANTHROPIC_API_KEY, else GEMINI_API_KEY (or GOOGLE_API_KEY); STAGEFX_DEMO_MODEL
names the model. With none, it starts FakeOpenAIServer on 127.0.0.1 with
stagefx's small deterministic demo model and says so: the same provider code,
HTTP client and wire format, no key and no network.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import TYPE_CHECKING

import anyio
from returns.result import Failure

from stagefx import (
    BatchResults,
    Finished,
    RecordingTracer,
    Retrying,
    Stage,
    StageState,
    TextDelta,
    ctx,
    format_trace,
    tool,
)
from stagefx.openai import OpenAI, OpenAIResponsesConfig

if TYPE_CHECKING:
    from stagefx.anthropic import Anthropic
    from stagefx.gemini import Gemini
from stagefx.testing import FakeOpenAIServer, demo_answer

DOCUMENT = """\
stagefx is a typed functional-effects DSL for LLM pipelines. A stage is a pure
value: a function from a StageState to an effect that, given an environment,
yields a result or a typed failure.

Combinators compose stages: sequences, loops, routers, concurrent fan-out with
a merge, and modifiers for retries, caching, timeouts and tracing. Hypothesis
checks that the combinators obey their laws, so refactoring a pipeline keeps
its meaning.
"""


@tool
async def word_count(text: str) -> int:
    """Count words in text."""
    return len(text.split())


def is_long(*, state: StageState) -> bool:
    return len(state.result.as_string()) > 100


def pipeline(document: str) -> Stage:
    return (
        Stage.sequence(
            Stage.completion(document, instructions="Analyze the document structure and content.")
            .with_meta(name="analyzer", description="Document analysis")
            .traced(),
            Stage.completion("Add word count information using the tool.", tools=[word_count])
            .with_meta(name="word_count")
            .traced()
            .when(condition=is_long),
            Stage.completion("Create a concise summary.")
            .with_meta(name="summary")
            .cached(limit=10)
            .traced(),
        )
        .with_retry(limit=2)
        .traced(label="document_pipeline")
    )


def model_setup() -> tuple[object, OpenAI | Anthropic | Gemini]:
    """The config and provider of the first provider with a key set (OpenAI
    when none is: the keyless demo serves OpenAI's API). The SDKs of the
    others are imported only when chosen: each is an extra of its own."""
    model = os.environ.get("STAGEFX_DEMO_MODEL")
    if not os.environ.get("OPENAI_API_KEY"):
        if os.environ.get("ANTHROPIC_API_KEY"):
            from stagefx.anthropic import Anthropic, AnthropicConfig

            return AnthropicConfig(model=model or "claude-sonnet-4-5", max_tokens=1024), Anthropic()
        if os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY"):
            from stagefx.gemini import Gemini, GeminiConfig

            return GeminiConfig(model=model or "gemini-2.5-flash"), Gemini()
    return OpenAIResponsesConfig(model=model or "gpt-4o"), OpenAI()


async def process_document(document: str, tracer: RecordingTracer) -> str:
    config, provider = model_setup()
    async with ctx.scope("document_processor", config, tracer, disposables=(provider,)):
        result_state = await stream_summary(pipeline(document))
        ctx.log_info("Generated document summary", summary=result_state.result.as_string())
        return result_state.result.as_string()


async def stream_summary(document_pipeline: Stage) -> StageState:
    """Run the pipeline, printing the summary stage's text as it arrives;
    its final state, or its failure raised (as `execute` would)."""
    print("Summary:\n  ", end="", flush=True)
    finished: Finished | None = None
    async with contextlib.aclosing(document_pipeline.stream()) as events:
        async for event in events:
            match event:
                case TextDelta(text=text, stage_path=("summary",)):
                    print(text, end="", flush=True)
                case Retrying(error=error):  # what was printed since the attempt began is void
                    print(f"\n  (retrying after {type(error).__name__})\n  ", end="", flush=True)
                case Finished():
                    finished = event
                case _:
                    pass
    print("\n")
    assert finished is not None  # always the last event
    if isinstance(finished.outcome, Failure):
        raise finished.outcome.failure()
    return finished.outcome.unwrap()


SECTIONS = [
    "Stages are values: building one runs nothing.",
    "Failures are values: every failure carries the last good state.",
    "Providers come from the environment, explicitly.",
    "One interpreter runs every pipeline, however deep.",
    "Usage adds up: retries, fallbacks and branches all count.",
    "Cassettes record real model calls once and replay them offline.",
]


async def process_dataset(documents: list[str]) -> BatchResults:
    """Part two: the pipeline over many documents, a few at a time, with a
    progress bar on a terminal and a summary at the end."""
    config, provider = model_setup()
    async with ctx.scope("dataset", config, disposables=(provider,)):
        # Each document becomes its item's result, which result_completion sends.
        summarise = Stage.result_completion(instructions="Summarise in one line.").with_retry(
            limit=2
        )
        return await summarise.batch(documents, concurrency=3, progress=True)


async def main() -> None:
    tracer = RecordingTracer()
    with contextlib.ExitStack() as stack:
        keys = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
        if not any(os.environ.get(key) for key in keys):
            server = stack.enter_context(FakeOpenAIServer(demo_answer))
            os.environ["OPENAI_API_KEY"] = "sk-demo-not-a-real-key"
            os.environ["OPENAI_BASE_URL"] = server.base_url
            print(
                "No OPENAI_API_KEY: serving OpenAI's API from FakeOpenAIServer at "
                f"{server.base_url} with stagefx's built-in demo model.\n"
            )
        await process_document(DOCUMENT, tracer)  # prints the summary as it streams
        print(format_trace(tracer.spans, "Stage timings", color=sys.stdout.isatty()))
        totals = tracer.usage()
        print(f"Tokens: {totals.input_tokens} in, {totals.output_tokens} out\n")

        print(f"Part two: the same kind of stage over {len(SECTIONS)} documents with batch")
        outcomes = await process_dataset(SECTIONS)
    done = outcomes.summary
    kinds = ", ".join(f"{count} {kind}" for kind, count in done.outcomes.items())
    print(
        f"Batch: {done.done} done ({kinds}), "
        f"{done.usage.input_tokens} tokens in, {done.usage.output_tokens} out, "
        f"{done.elapsed:.2f} s"
    )
    first = outcomes[0].unwrap().result.as_string()
    print(f"  first: {first[:100]}")


if __name__ == "__main__":
    anyio.run(main)
