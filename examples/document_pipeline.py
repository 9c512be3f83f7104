"""The demo: a small document pipeline, run end to end with no API key."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from stagefx import MultimodalContent, Stage, StageException, StageState, ctx


def merge(branches: Sequence[StageState | StageException]) -> StageState:
    done = [branch for branch in branches if isinstance(branch, StageState)]
    return done[0].updated(result=MultimodalContent.of(*[b.result for b in done]))


def words(content: MultimodalContent) -> MultimodalContent:
    return MultimodalContent.of(f"{len(content.as_string().split())} words. ")


def lines(content: MultimodalContent) -> MultimodalContent:
    return MultimodalContent.of(f"{len(content.as_string().splitlines())} lines.")


async def main() -> None:
    document = "stagefx composes typed stages.\nEach stage is a pure value.\n"
    async with ctx.scope("demo"):
        pipeline = Stage.sequence(
            Stage.predefined("Here is a document.", document),
            Stage.concurrent(
                Stage.transform_result(words), Stage.transform_result(lines), merge=merge
            ),
        ).with_retry(limit=2)
        state = await pipeline.execute()
    print(state.result.as_string())


if __name__ == "__main__":
    anyio.run(main)
