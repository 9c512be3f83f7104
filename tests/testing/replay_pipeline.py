"""A pipeline with every kind of model call, recorded in tests/testing/test_recorder.py
and replayed there in a fresh process (`python -m tests.testing.replay_pipeline CASSETTE`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence

import anyio
import attrs

from stagefx import Stage, StageException, StageState, ctx, tool
from stagefx._codec import encode_state
from stagefx.openai import OpenAI, OpenAIChatConfig, OpenAIResponsesConfig
from stagefx.testing import Recorder, RecordMode


@attrs.frozen
class Summary:
    title: str
    words: int


@tool
async def word_count(text: str) -> int:
    """Count the words of a text."""
    return len(text.split())


def joined(branches: Sequence[StageState | StageException]) -> StageState:
    texts = [branch.result.as_string() for branch in branches if isinstance(branch, StageState)]
    last = branches[-1]
    assert isinstance(last, StageState)
    return last.updated(result=" | ".join(texts))


def pipeline(topic: str) -> Stage:
    """A sequence, a tool round trip, a concurrent fan-out and structured output."""
    return Stage.sequence(
        Stage.completion(f"Analyze the document about {topic}."),
        Stage.completion("Add word count information.", tools=[word_count]),
        Stage.concurrent(
            Stage.completion("Angle one: risks.").with_volatile_context(),
            Stage.completion("Angle two: benefits.").with_volatile_context(),
            merge=joined,
        ),
        Stage.completion("Summarise as a title and a word count.", output=Summary),
    )


async def run(cassette: str, mode: RecordMode, api: str, topic: str) -> str:
    """The final state of the pipeline under a Recorder, as canonical JSON."""
    config = (
        OpenAIResponsesConfig(model="gpt-4o")
        if api == "responses"
        else OpenAIChatConfig(model="gpt-4o", temperature=0.2)
    )
    async with ctx.scope("replay", config, Recorder(cassette, mode=mode), disposables=(OpenAI(),)):
        state = await pipeline(topic).execute()
    return json.dumps(encode_state(state), sort_keys=True)


if __name__ == "__main__":
    # Through the module's own name, so its classes are the ones the recording run used.
    from tests.testing.replay_pipeline import run as replay

    cassette, api, topic = sys.argv[1:4]
    print(anyio.run(replay, cassette, "replay", api, topic))
