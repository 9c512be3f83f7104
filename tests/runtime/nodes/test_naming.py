"""Naming nodes: `with_meta`, `meta=` and `traced`: a stage's name, tags and span."""

from __future__ import annotations

import pytest

from stagefx import Env, Stage, StageMeta, StageState, stage

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


async def test_with_meta_and_traced_record_a_named_span() -> None:
    from stagefx import RecordingTracer

    tracer = RecordingTracer()
    traced = Stage.noop.with_meta(name="step", description="does nothing", owner="me").traced()
    await traced.execute(env=Env.of(tracer))
    (span,) = tracer.spans
    assert (span.name, span.outcome, dict(span.attributes)) == ("step", "success", {"owner": "me"})


async def test_constructors_and_stage_take_meta_as_with_meta_does() -> None:
    @stage(meta={"name": "tagger", "description": "Tags", "tags": ["t"], "owner": "me"})
    async def tagger(*, state: StageState) -> StageState:
        raise ValueError("no")

    assert tagger.meta == StageMeta("tagger", "Tags", {"owner": "me"}, ("t",))
    assert (await tagger.attempt()).failure().stage_path == ("tagger",)
    made = Stage.predefined("q", meta=StageMeta(name="question"))
    assert made.meta.name == "question"
    assert Stage.completion("hi", meta={"name": "c"}).meta.name == "c"
    assert Stage.noop.with_meta(tags=["a", "b"]).with_meta(name="n").meta.tags == ("a", "b")
    with pytest.raises(TypeError, match="tags"):
        StageMeta.of({"tags": "ab"})
