"""A model cannot reach beyond what a stage gives it."""

from __future__ import annotations

import anyio
import pytest

from stagefx import Env, ModelInput, ModelOutput, ModelToolRequest, Stage, tool
from stagefx.testing import ScriptedModel

pytestmark = pytest.mark.anyio

calls: list[str] = []


@tool
async def delete_account(user: str) -> str:
    """Dangerous: only the admin stage gets it."""
    calls.append(user)
    return "deleted"


@tool
async def transfer(amount: int) -> str:
    """Move money."""
    calls.append(f"transfer {amount}")
    return "moved"


def asking(name: str, **arguments: object) -> ModelOutput:
    return ModelOutput(tool_requests=(ModelToolRequest("c1", name, arguments),))


async def test_a_tool_given_to_another_stage_cannot_be_called() -> None:
    calls.clear()
    model = ScriptedModel("admin done", asking("delete_account", user="alice"), "ok")
    pipeline = Stage.sequence(
        Stage.completion("admin work", tools=[delete_account]),
        Stage.completion("user chat", tools=[transfer]),
    )
    await pipeline.execute(env=Env.of(model))
    assert calls == []
    answer = model.requests[-1].context[-1]
    assert isinstance(answer, ModelInput)
    assert answer.tool_responses[0].error


@pytest.mark.parametrize(
    "arguments", [{"amount": "all of it"}, {"amount": 5, "to": "attacker"}, {}, {"amount": [1]}]
)
async def test_arguments_are_validated_before_the_tool_runs(arguments: dict[str, object]) -> None:
    calls.clear()
    model = ScriptedModel(asking("transfer", **arguments), "ok")
    await Stage.completion("pay", tools=[transfer]).execute(env=Env.of(model))
    assert calls == []


@pytest.mark.parametrize("output", ["json", "yaml"])
async def test_model_output_is_data_never_code(output: str) -> None:
    payloads = {
        "json": "{\"code\": \"__import__('os').system('touch /tmp/stagefx-pwned')\"}",
        "yaml": "code: !!python/object/apply:os.system ['touch /tmp/stagefx-pwned']",
    }
    model = ScriptedModel(payloads[output])
    outcome = await Stage.completion("x", output=output).attempt(env=Env.of(model))  # type: ignore[arg-type]  # both modes
    if output == "json":
        assert outcome.unwrap().result.artifacts(dict) == (
            {"code": "__import__('os').system('touch /tmp/stagefx-pwned')"},
        )
    else:
        assert "not valid yaml" in str(outcome.failure())
    assert not await anyio.Path("/tmp/stagefx-pwned").exists()
