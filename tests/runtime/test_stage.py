"""The Stage facade: what it refuses at construction, and running without an Env."""

from __future__ import annotations

import pytest

from stagefx import ModelInput, MultimodalContent, Stage, StageState

pytestmark = [pytest.mark.anyio, pytest.mark.both_backends]


async def test_stages_without_providers_run_with_no_env_and_no_scope() -> None:
    pipeline = Stage.sequence(
        Stage.noop,
        Stage.predefined("q", "a"),
        Stage.transform_result(lambda content: MultimodalContent.of(content, "!")),
        Stage.trim_context(limit=1),
        Stage.strip_context_tools(),
    )
    state = await pipeline.execute(StageState(result="hi"))  # no env=, no ctx.scope
    assert state.result.as_string() == "hi!"
    assert state.context == (ModelInput.of("q"),)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Stage.sequence(), "needs at least one stage"),
        (lambda: Stage.concurrent(merge=lambda branches: StageState.empty), "at least one stage"),
        (lambda: Stage.trim_context(limit=-1), r"trim_context\(limit=...\) needs an int >= 0"),
        (lambda: Stage.noop.with_retry(limit=-1), r"with_retry\(limit=...\) needs an int >= 0"),
        (lambda: Stage.noop.with_retry(delay=-2.0), "delay"),
        (lambda: Stage.noop.cached(limit=0), r"cached\(limit=...\) needs an int >= 1"),
        (lambda: Stage.noop.cached(expiration=0), "expiration"),
        (lambda: Stage.noop.with_timeout(0), "seconds > 0"),
        (lambda: Stage.noop.with_meta(name=""), "non-empty"),
        (
            lambda: Stage.concurrent(
                Stage.noop, merge=lambda b: StageState.empty, concurrent_tasks=0
            ),
            "concurrent_tasks",
        ),
        (
            lambda: Stage.loop(
                Stage.noop,
                condition=lambda *, state, iteration: True,
                mode="sometimes",  # type: ignore[arg-type]  # the mistake under test
            ),
            "post_check",
        ),
    ],
)
def test_bad_arguments_are_refused_at_construction(build: object, message: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    "build",
    [
        lambda: Stage.noop.when("yes"),  # type: ignore[arg-type]  # the mistake under test
        lambda: Stage.noop.with_retry(catching="ValueError"),  # type: ignore[arg-type]  # the mistake under test
        lambda: Stage.sequence(Stage.noop, "stage"),  # type: ignore[arg-type]  # the mistake under test
        lambda: Stage.transform_result("upper"),  # type: ignore[arg-type]  # the mistake under test
    ],
)
def test_values_of_the_wrong_kind_are_refused_at_construction(build: object) -> None:
    assert callable(build)
    with pytest.raises(TypeError):
        build()
