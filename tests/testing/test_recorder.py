"""Record and replay: real model calls once, then offline, deterministically."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st
from returns.result import Failure, Success

from stagefx import (
    ArtifactContent,
    Env,
    GenerativeModel,
    ModelFailure,
    ModelInput,
    ModelOutput,
    ModelRateLimitError,
    ModelRequest,
    MultimodalContent,
    RateLimits,
    Stage,
    StageException,
    StageExecutionError,
    StageState,
    ctx,
)
from stagefx._codec import JSON, encode_answer, encode_request
from stagefx._model.boundary import ModelPath
from stagefx.openai import OpenAI, OpenAIChatConfig
from stagefx.testing import (
    FakeOpenAIServer,
    FunctionModel,
    Recorder,
    ReplayMissError,
    ScriptedModel,
    demo_answer,
)
from tests.codec.test_codec import GARBAGE_SETTINGS, SETTINGS, Answer, answers, garbage, requests
from tests.helpers import ROOT
from tests.testing.replay_pipeline import run

pytestmark = pytest.mark.anyio


async def through(
    layer: Recorder, request: ModelRequest, env: Env, model: GenerativeModel | None
) -> ModelOutput | ModelFailure:
    """One model call through `layer` alone, as the model boundary makes it."""
    answer: object = None
    async for item in layer.model_stream(request, env, ModelPath(model)):
        answer = item
    assert isinstance(answer, ModelOutput | ModelFailure)
    return answer


class OutOfOrder:
    """The demo model, answering the first concurrent branch only after the
    second: the branches finish in the opposite order to the one they began in."""

    def __init__(self) -> None:
        self.second_answered: asyncio.Event | None = None

    async def __call__(self, request: ModelRequest) -> object:
        if self.second_answered is None:
            self.second_answered = asyncio.Event()  # made in the server's own loop
        said = _last_input(request)
        if "Angle one" in said:
            await asyncio.wait_for(self.second_answered.wait(), timeout=10)
        answer = demo_answer(request)
        if "Angle two" in said:
            self.second_answered.set()
        return answer


def _last_input(request: ModelRequest) -> str:
    for turn in reversed(request.context):
        if isinstance(turn, ModelInput) and not turn.content.is_empty:
            return turn.content.as_string()
    return ""


def replay_in_a_fresh_process(
    cassette: Path, api: str, topic: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.testing.replay_pipeline", str(cassette), api, topic],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "", "PYTHONPATH": str(ROOT)},  # no key, no base URL: nothing to call
        check=False,
    )


@pytest.mark.parametrize("api", ["responses", "chat"])
async def test_a_recorded_pipeline_replays_in_a_fresh_process_with_the_server_gone(
    api: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cassette = tmp_path / "pipeline.json"
    callback = OutOfOrder()
    with FakeOpenAIServer(callback) as server:  # type: ignore[arg-type]  # answers like demo_answer
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test-recording-key-123456")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        recorded = await run(str(cassette), "once", api, "solar panels")
        calls = len(server.requests)
    assert calls == 6  # analyse, tool request + answer, two branches, summary
    text = cassette.read_text()
    assert "sk-test-recording-key" not in text
    assert json.loads(text)["version"] == 1

    replayed = replay_in_a_fresh_process(cassette, api, "solar panels")
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.strip() == recorded
    assert cassette.read_text() == text  # a replay never rewrites the cassette

    changed = replay_in_a_fresh_process(cassette, api, "wind turbines")
    assert changed.returncode != 0
    assert "ReplayMissError" in changed.stderr
    assert "-" in changed.stderr
    assert "wind turbines" in changed.stderr
    assert "solar panels" in changed.stderr


async def test_a_replay_miss_shows_the_changed_line_as_a_diff(tmp_path: Path) -> None:
    cassette = tmp_path / "miss.json"
    await Stage.completion("What is the capital of France?").execute(
        env=Env.of(ScriptedModel("Paris"), Recorder(cassette))
    )
    replay = Env.of(ScriptedModel(), Recorder(cassette, mode="replay"))
    failed = (await Stage.completion("What is the capital of Spain?").attempt(env=replay)).failure()
    assert isinstance(failed, ReplayMissError)
    diff = str(failed).splitlines()
    assert any(line.startswith("-") and "France" in line for line in diff)
    assert any(line.startswith("+") and "Spain" in line for line in diff)
    assert failed.nearest is not None
    assert failed.state == StageState.empty  # the stage's own input, as for any failure


async def test_once_records_then_replays_without_calling_the_model(tmp_path: Path) -> None:
    cassette = tmp_path / "once.json"
    model = ScriptedModel("first answer")
    state = await Stage.completion("hi").execute(env=Env.of(model, Recorder(cassette)))
    assert len(model.requests) == 1
    again = ScriptedModel()  # would fail loudly if called
    replayed = await Stage.completion("hi").execute(env=Env.of(again, Recorder(cassette)))
    assert replayed == state
    assert again.requests == []


async def test_replay_needs_no_model_at_all(tmp_path: Path) -> None:
    cassette = tmp_path / "no-model.json"
    await Stage.completion("hi").execute(env=Env.of(ScriptedModel("hello"), Recorder(cassette)))
    replayed = await Stage.completion("hi").execute(env=Env.of(Recorder(cassette, mode="replay")))
    assert replayed.result.as_string() == "hello"


async def test_replay_without_a_cassette_fails_instead_of_calling_out(tmp_path: Path) -> None:
    model = ScriptedModel("never")
    recorder = Recorder(tmp_path / "missing.json", mode="replay")
    failed = (await Stage.completion("hi").attempt(env=Env.of(model, recorder))).failure()
    assert isinstance(failed, ReplayMissError)
    assert "empty" in str(failed)
    assert model.requests == []
    assert not (tmp_path / "missing.json").exists()


async def test_identical_calls_replay_in_the_order_they_were_recorded(tmp_path: Path) -> None:
    cassette = tmp_path / "order.json"
    twice = Stage.sequence(
        Stage.completion("roll a die").with_volatile_context(),
        Stage.completion("roll a die").with_volatile_context().extend_result(),
    )
    recorded = await twice.execute(env=Env.of(ScriptedModel("3", "5"), Recorder(cassette)))
    replayed = await twice.execute(env=Env.of(Recorder(cassette, mode="replay")))
    assert recorded.result.as_string() == replayed.result.as_string() == "35"


def pick_all(branches: Sequence[StageState | StageException]) -> StageState:
    texts = [b.result.as_string() for b in branches if isinstance(b, StageState)]
    return StageState(result=",".join(texts))


async def test_concurrent_calls_replay_whatever_order_they_arrive_in(tmp_path: Path) -> None:
    cassette = tmp_path / "fan.json"
    model = FunctionModel(lambda request: f"answer to {_last_input(request)}")
    questions = [Stage.completion(f"question {n}") for n in range(6)]
    one_at_a_time = Stage.concurrent(*questions, merge=pick_all, concurrent_tasks=1)
    recorded = await one_at_a_time.execute(env=Env.of(model, Recorder(cassette)))
    all_at_once_reversed = Stage.concurrent(*reversed(questions), merge=pick_all)
    replayed = await all_at_once_reversed.execute(env=Env.of(Recorder(cassette, mode="replay")))
    assert replayed.result.as_string().split(",") == list(
        reversed(recorded.result.as_string().split(","))
    )


async def test_typed_failures_are_recorded_and_replayed(tmp_path: Path) -> None:
    cassette = tmp_path / "failure.json"
    limited = ModelFailure("rate_limited", "slow down", retry_after=2.5)
    first = (
        await Stage.completion("hi").attempt(env=Env.of(ScriptedModel(limited), Recorder(cassette)))
    ).failure()
    again = (
        await Stage.completion("hi").attempt(env=Env.of(Recorder(cassette, mode="replay")))
    ).failure()
    for failed in (first, again):
        assert isinstance(failed, ModelRateLimitError)
        assert failed.retry_after == 2.5
        assert failed.message == "slow down"


async def test_record_overwrites_and_new_adds_only_what_is_missing(tmp_path: Path) -> None:
    cassette = tmp_path / "modes.json"
    await Stage.completion("a").execute(env=Env.of(ScriptedModel("old a"), Recorder(cassette)))
    overwritten = Recorder(cassette, mode="record")
    state = await Stage.completion("a").execute(env=Env.of(ScriptedModel("new a"), overwritten))
    assert state.result.as_string() == "new a"
    assert "old a" not in cassette.read_text()

    model = ScriptedModel("b")
    both = Stage.sequence(Stage.completion("a"), Stage.completion("b"))
    state = await both.execute(env=Env.of(model, Recorder(cassette, mode="new")))
    assert len(model.requests) == 1  # "a" replayed, "b" recorded
    calls = json.loads(cassette.read_text())["calls"]
    assert len(calls) == 2


async def test_unused_recordings_are_listed_and_pruned(tmp_path: Path) -> None:
    cassette = tmp_path / "prune.json"
    both = Stage.sequence(Stage.completion("kept"), Stage.completion("stale"))
    await both.execute(env=Env.of(ScriptedModel("1", "2"), Recorder(cassette)))
    recorder = Recorder(cassette, mode="new")
    await Stage.completion("kept").execute(env=Env.of(ScriptedModel(), recorder))
    (unused,) = recorder.unused()
    assert "stale" in json.dumps(unused)
    with pytest.raises(ValueError, match="prune"):
        Recorder(cassette, mode="replay").prune()
    assert recorder.prune() == 1
    assert len(json.loads(cassette.read_text())["calls"]) == 1


async def test_rerecording_the_same_answers_leaves_the_cassette_byte_identical(
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "stable.json"
    model = FunctionModel(lambda request: f"answer to {_last_input(request)}")
    fan = Stage.concurrent(*(Stage.completion(f"q{n}") for n in range(5)), merge=pick_all)
    await fan.execute(env=Env.of(model, Recorder(cassette, mode="record")))
    first = cassette.read_bytes()
    reversed_fan = Stage.concurrent(
        *(Stage.completion(f"q{n}") for n in reversed(range(5))), merge=pick_all
    )
    await reversed_fan.execute(env=Env.of(model, Recorder(cassette, mode="record")))
    assert cassette.read_bytes() == first
    data = json.loads(first)
    assert data["format"] == "stagefx cassette"
    assert first.decode().startswith('{\n  "calls": [')  # pretty, sorted keys


@pytest.mark.parametrize(
    "key",
    [
        "sk-proj-AbCdEf0123456789AbCdEf0123456789",
        "gsk_0123456789abcdefABCDEF0123456789abcdefABCD",
        "0123456789abcdef0123456789abcdef",
        "AIzaSyA-0123456789abcdefghijklmnopqrstu",
    ],
)
async def test_keys_of_any_shape_never_reach_a_cassette(
    key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cassette = tmp_path / "keys.json"
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAIServer() as server:
        provider = OpenAI(api_key=key, base_url=server.base_url)
        config = OpenAIChatConfig(model="gpt-4o")
        async with ctx.scope("keys", config, Recorder(cassette), disposables=(provider,)):
            await Stage.completion("hello").execute()
            assert cassette.exists()
            assert key not in cassette.read_text()
            # A prompt that quotes the key is refused, not written.
            leaking = Stage.completion(f"my key is {key}")
            failed = (await leaking.attempt()).failure()
        assert server.requests[-1].headers["authorization"] == f"Bearer {key}"
    assert isinstance(failed, StageExecutionError)
    assert "secret" in str(failed)
    assert key not in str(failed)
    assert key not in cassette.read_text()


def test_no_two_tests_share_a_cassette(pytester: pytest.Pytester) -> None:
    """Same-named tests in two classes, parameters that differ only in
    punctuation, and same-named modules in two folders each get their own."""
    flow = """
        import anyio, pytest
        from stagefx import Env, Stage
        from stagefx.testing import ScriptedModel

        def answer(stagefx_recorder, text):
            env = Env.of(ScriptedModel(text), stagefx_recorder)
            async def main():
                return await Stage.completion("capital?").execute(env=env)
            assert anyio.run(main).result.as_string() == text

        class TestFrance:
            def test_capital(self, stagefx_recorder):
                answer(stagefx_recorder, "Paris")

        class TestSpain:
            def test_capital(self, stagefx_recorder):
                answer(stagefx_recorder, "Madrid")

        @pytest.mark.parametrize("city", ["a,b", "a;b"])
        def test_city(stagefx_recorder, city):
            answer(stagefx_recorder, city)
        """
    for folder in ("europe", "asia"):
        (pytester.path / folder).mkdir()
        (pytester.path / folder / "__init__.py").write_text("")
        (pytester.path / folder / "test_capitals.py").write_text(textwrap.dedent(flow))
    recorded = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    recorded.assert_outcomes(passed=8)
    cassettes = sorted((pytester.path / "tests" / "cassettes").rglob("*.json"))
    assert len(cassettes) == 8
    replayed = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--stagefx-record-mode=replay"
    )
    replayed.assert_outcomes(passed=8)


def test_the_pytest_option_runs_recorders_in_replay_mode(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_flow="""
        import anyio
        from stagefx import Env, Stage
        from stagefx.testing import ScriptedModel

        def test_flow(stagefx_recorder):
            env = Env.of(ScriptedModel("recorded answer"), stagefx_recorder)

            async def main():
                return await Stage.completion("hi").execute(env=env)
            assert anyio.run(main).result.as_string() == "recorded answer"
        """
    )
    missing = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--stagefx-record-mode=replay"
    )
    missing.assert_outcomes(failed=1)
    assert "ReplayMissError" in missing.stdout.str()
    recorded = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    recorded.assert_outcomes(passed=1)
    (cassette,) = (pytester.path / "tests" / "cassettes" / "test_flow").glob("*.json")
    assert "recorded answer" in cassette.read_text()
    replayed = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--stagefx-record-mode=replay"
    )
    replayed.assert_outcomes(passed=1)


# --- through the Recorder itself ---------------------------------------------------------


@SETTINGS
@given(st.lists(st.tuples(requests, answers), min_size=1, max_size=4))
def test_recorded_calls_replay_as_equal_answers(calls: list[tuple[ModelRequest, Answer]]) -> None:
    """For generated requests and answers: what a Recorder records, a fresh
    Recorder replays, equal (usage and finish reason included), in any order."""

    async def record_then_replay(cassette: Path) -> list[Answer]:
        model = ScriptedModel(*(answer for _, answer in calls))
        recorder = Recorder(cassette, mode="record")
        env = Env.of(model, recorder)
        for request, _ in calls:
            await through(recorder, request, env, model)
        replay = Recorder(cassette, mode="replay")
        replayed = [await through(replay, request, env, model) for request, _ in reversed(calls)]
        assert replay.unused() == []
        return list(reversed(replayed))

    with tempfile.TemporaryDirectory() as folder:
        replayed = anyio.run(record_then_replay, Path(folder) / "calls.json")
    expected = [answer for _, answer in calls]
    assert_answers_equal(replayed, expected)


def assert_answers_equal(actual: Sequence[Answer], expected: Sequence[Answer]) -> None:
    """Equal requests answer in recorded order, so compare as multisets per request."""
    assert len(actual) == len(expected)
    remaining = list(expected)
    for answer in actual:
        match = next(
            index
            for index, candidate in enumerate(remaining)
            if candidate == answer
            and (
                not isinstance(answer, ModelOutput)
                or (
                    isinstance(candidate, ModelOutput)
                    and (candidate.usage, candidate.finish_reason)
                    == (answer.usage, answer.finish_reason)
                )
            )
        )
        remaining.pop(match)


async def test_a_hand_edited_cassette_still_replays(tmp_path: Path) -> None:
    """Keys in any order, other whitespace, defaults left out, numbers written
    another way: an entry matches the call it describes."""
    cassette = tmp_path / "edited.json"
    cassette.write_text(
        """{"version": 1, "format": "stagefx cassette", "calls": [
          {"answer": {"output": {"content": ["Paris"]}},
           "request": {"instructions": "", "extra": {"temperature": 1e-05},
                       "context": [{"input": {"content": ["Capital of France?"]}}]},
           "model": {"provider": "ScriptedModel"}}
        ]}"""
    )
    ask = Stage.completion("Capital of France?", temperature=0.00001)
    state = await ask.execute(env=Env.of(ScriptedModel(), Recorder(cassette, mode="replay")))
    assert state.result.as_string() == "Paris"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "is not a stagefx cassette"),
        ('{"version": 1, "calls": [{"model": {}, "request": {}}]}', "$.calls[0]"),
        ('{"version": 2, "calls": []}', "is of version 2"),
        ('{"calls": []}', "version"),
    ],
)
def test_a_malformed_cassette_is_refused_saying_where(text: str, says: str, tmp_path: Path) -> None:
    cassette = tmp_path / "bad.json"
    cassette.write_text(text)
    with pytest.raises(ValueError, match=re.escape(says)):
        Recorder(cassette, mode="replay")


async def test_a_miss_names_entries_that_do_not_decode(tmp_path: Path) -> None:
    cassette = tmp_path / "broken.json"
    cassette.write_text(
        '{"version": 1, "calls": [{"model": null, "request": {"context": []},'
        ' "answer": {"output": {}}}]}'
    )
    failed = (
        await Stage.completion("hi").attempt(env=Env.of(Recorder(cassette, mode="replay")))
    ).failure()
    assert isinstance(failed, ReplayMissError)
    assert """the recorded call {"context":[]} does not decode: request: missing key""" in str(
        failed
    )


HI_REQUEST: JSON = encode_request(ModelRequest("", (ModelInput(MultimodalContent.of("hi")),)))


@GARBAGE_SETTINGS
@given(
    st.lists(
        st.tuples(garbage, st.just(HI_REQUEST) | garbage, garbage | answers.map(encode_answer)),
        max_size=3,
    )
)
def test_a_hostile_cassette_is_refused_or_fails_as_a_value(
    calls: list[tuple[JSON, JSON, JSON]],
) -> None:
    """Whatever a cassette holds: the Recorder refuses it with a ValueError
    when it is made, or a replay gives a value, or a failure value."""
    with tempfile.TemporaryDirectory() as folder:
        cassette = Path(folder) / "hostile.json"
        try:
            text = json.dumps(
                {
                    "version": 1,
                    "calls": [
                        {"model": model, "request": request, "answer": answer}
                        for model, request, answer in calls
                    ],
                }
            )
        except ValueError:
            return  # not a file anyone can write (an integer of thousands of digits)
        cassette.write_text(text)
        try:
            recorder = Recorder(cassette, mode="replay")
        except ValueError:
            return

        async def replay() -> object:
            return await Stage.completion("hi").attempt(env=Env.of(recorder))

        outcome = anyio.run(replay)
    assert isinstance(outcome, Success | Failure)


@dataclasses.dataclass
class Weather:
    city: str
    celsius: float


def _weather_request() -> ModelRequest:
    """A call whose context holds a typed artifact (what a tool returning a dataclass gives)."""
    turn = ModelInput(MultimodalContent.of(ArtifactContent(Weather("Paris", 21.5))))
    return ModelRequest("", (turn,))


async def test_a_miss_does_not_change_how_recorded_calls_match(tmp_path: Path) -> None:
    """Bringing hand edits to canonical form on a miss leaves the calls a
    Recorder wrote (typed artifacts included) matching as before."""
    cassette = tmp_path / "artifact.json"
    weather, other = (
        _weather_request(),
        ModelRequest("", (ModelInput(MultimodalContent.of("new")),)),
    )
    model = ScriptedModel("21.5 in Paris")
    recorder = Recorder(cassette, mode="record")
    await through(recorder, weather, Env.of(model, recorder), model)

    later = ScriptedModel("answer to the new call")  # a second call would fail: none scripted
    recorder = Recorder(cassette, mode="new")
    env = Env.of(later, recorder)
    await through(recorder, other, env, later)  # a miss: recorded
    replayed = await through(recorder, weather, env, later)
    assert isinstance(replayed, ModelOutput)
    assert replayed.content.as_string() == "21.5 in Paris"
    assert len(later.requests) == 1
    assert len(json.loads(cassette.read_text())["calls"]) == 2


async def test_one_call_written_two_ways_replays_each_answer_once(tmp_path: Path) -> None:
    cassette = tmp_path / "twice.json"
    request = ModelRequest("", (ModelInput(MultimodalContent.of("roll a die")),))
    recorder = Recorder(cassette, mode="record")
    model = ScriptedModel("6")
    await through(recorder, request, Env.of(model, recorder), model)
    data = json.loads(cassette.read_text())
    hand_written = {
        "model": {"provider": "ScriptedModel"},
        "request": {"context": [{"input": {"content": ["roll a die"]}}], "instructions": ""},
        "answer": {"output": {"content": ["2"]}},
    }
    data["calls"].insert(0, hand_written)
    cassette.write_text(json.dumps(data))

    replay = Recorder(cassette, mode="replay")
    env = Env.of(ScriptedModel(), replay)
    rolls = []
    for _ in range(2):
        answer = await through(replay, request, env, ScriptedModel())
        assert isinstance(answer, ModelOutput)
        rolls.append(answer.content.as_string())
    assert sorted(rolls) == ["2", "6"]
    assert replay.unused() == []
    failed = (await Stage.completion("roll a die").attempt(env=env)).failure()
    assert isinstance(failed, ReplayMissError)


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"version": 1, "calls": [{"model": null, "request": "\xff", "answer": {}}]}', "UTF-8"),
        (b'{"version": 1, "calls": [], "deep": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", "deep"),
    ],
)
def test_a_cassette_that_is_not_utf8_or_absurdly_deep_is_refused(
    content: bytes, says: str, tmp_path: Path
) -> None:
    cassette = tmp_path / "bad.json"
    cassette.write_bytes(content)
    with pytest.raises(ValueError, match=says):
        Recorder(cassette, mode="replay")


class Fingerprinted(GenerativeModel):
    """A scripted model that counts how often its fingerprint is asked for."""

    def __init__(self, *answers: str) -> None:
        self.scripted = ScriptedModel(*answers)
        self.fingerprints = 0

    async def generate(self, request: ModelRequest, env: Env) -> ModelOutput | ModelFailure:
        return await self.scripted.generate(request, env)

    def fingerprint(self, env: Env) -> Mapping[str, object]:
        self.fingerprints += 1
        return {"provider": "Fingerprinted"}


async def test_the_fingerprint_is_computed_once_with_other_layers_inside(tmp_path: Path) -> None:
    """With rate limits between the Recorder and the model, the Recorder
    still asks the model for its fingerprint once per Env."""
    cassette = tmp_path / "limited.json"
    ask = Stage.completion("hi").with_volatile_context()
    calls = Stage.loop(ask, condition=lambda *, state, iteration: iteration < 20)
    model = Fingerprinted(*(["hello"] * 20))
    env = Env.of(model, Recorder(cassette), RateLimits(requests_per_minute=1_000_000))
    await calls.execute(env=env)
    assert model.fingerprints == 1
    replaying = Fingerprinted()
    env = Env.of(replaying, Recorder(cassette, mode="replay"), RateLimits(requests_per_minute=10))
    await calls.execute(env=env)
    assert replaying.fingerprints == 1


class Setting:
    """A value `with_ctx` adds: the stage runs in a new Env each time."""


async def test_a_stage_making_an_env_per_run_does_not_grow_the_recorder(tmp_path: Path) -> None:
    """`with_ctx` (like a durable run) makes a new Env at every run: the
    Recorder's fingerprints per (model, Env) stay bounded, and every call
    still replays its own answer."""
    calls = 4_500
    one = tmp_path / "one.json"
    ask = Stage.completion("hi").with_volatile_context().with_ctx(Setting())
    await ask.execute(env=Env.of(Fingerprinted("hello"), Recorder(one)))
    data = json.loads(one.read_text())
    data["calls"] = data["calls"] * calls
    cassette = tmp_path / "many.json"
    cassette.write_text(json.dumps(data))
    recorder = Recorder(cassette, mode="replay")
    model = Fingerprinted()
    loop = Stage.loop(ask, condition=lambda *, state, iteration: iteration < calls)
    state = await loop.execute(env=Env.of(model, recorder))
    assert state.result == MultimodalContent.of("hello")
    assert model.fingerprints == calls  # each Env is new: its fingerprint is asked for
    assert recorder.unused() == []
    assert len(recorder._fingerprints) <= 4096  # the bound is the behaviour


@pytest.mark.parametrize("secret", ['pa"ss-word-123', "back\\slash-secret", "tab\there-secret"])
async def test_secrets_json_would_escape_are_refused_too(secret: str, tmp_path: Path) -> None:
    cassette = tmp_path / "escaped.json"
    recorder = Recorder(cassette, mode="record", secrets=[secret])
    leaking = Stage.completion(f"the password is {secret}")
    failed = (await leaking.attempt(env=Env.of(ScriptedModel("ok"), recorder))).failure()
    assert isinstance(failed, StageExecutionError)
    assert "secret" in str(failed)
    assert not cassette.exists()


async def test_a_pruned_hand_edited_call_is_recorded_anew(tmp_path: Path) -> None:
    cassette = tmp_path / "pruned.json"
    hand_written = {
        "model": {"provider": "ScriptedModel"},
        "request": {"context": [{"input": {"content": ["roll a die"]}}], "instructions": ""},
        "answer": {"output": {"content": ["2"]}},
    }
    cassette.write_text(json.dumps({"version": 1, "calls": [hand_written]}))
    model = ScriptedModel("an answer to another call", "a fresh roll")
    env = Env.of(model, Recorder(cassette, mode="new"))
    recorder = env.get(Recorder)
    assert recorder is not None
    await Stage.completion("another call").execute(env=env)  # a miss: hand edits are checked
    assert recorder.prune() == 1
    state = await Stage.completion("roll a die").execute(env=env)
    assert state.result.as_string() == "a fresh roll"


ROLL = ModelRequest("", (ModelInput(MultimodalContent.of("roll")),))
SHORT_ROLL: JSON = {"context": [{"input": {"content": ["roll"]}}], "instructions": ""}


def _hand_written(path: Path, *calls: tuple[JSON, str]) -> None:
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "calls": [
                    {
                        "model": {"provider": "ScriptedModel"},
                        "request": request,
                        "answer": {"output": {"content": [answer]}},
                    }
                    for request, answer in calls
                ],
            }
        )
    )


async def _roll(recorder: Recorder, model: ScriptedModel, times: int) -> list[str]:
    env = Env.of(model, recorder)
    rolls = []
    for _ in range(times):
        answer = await through(recorder, ROLL, env, model)
        assert isinstance(answer, ModelOutput)
        rolls.append(answer.content.as_string())
    return rolls


async def test_spellings_leaving_out_different_defaults_are_one_call(tmp_path: Path) -> None:
    cassette = tmp_path / "spellings.json"
    assert isinstance(SHORT_ROLL, dict)
    _hand_written(cassette, (SHORT_ROLL, "first"), ({**SHORT_ROLL, "tools": []}, "second"))
    recorder = Recorder(cassette, mode="new")
    assert await _roll(recorder, ScriptedModel(), 2) == ["first", "second"]
    assert recorder.unused() == []


async def test_an_answer_recorded_after_hand_written_ones_replays_after_them(
    tmp_path: Path,
) -> None:
    cassette = tmp_path / "after.json"
    _hand_written(cassette, (SHORT_ROLL, "by hand"))
    assert await _roll(Recorder(cassette, mode="new"), ScriptedModel("recorded"), 2) == [
        "by hand",
        "recorded",
    ]
    assert await _roll(Recorder(cassette, mode="replay"), ScriptedModel(), 2) == [
        "by hand",
        "recorded",
    ]


async def test_a_prune_that_cannot_write_changes_nothing(tmp_path: Path) -> None:
    cassette = tmp_path / "unwritable.json"
    key_shaped = "sk-abcdefghijklmnop"  # written by hand: a Recorder would never write it
    other: JSON = {"context": [{"input": {"content": ["other"]}}], "instructions": ""}
    _hand_written(cassette, (SHORT_ROLL, key_shaped), (other, "unused"))
    before = cassette.read_bytes()
    recorder = Recorder(cassette, mode="new")
    assert await _roll(recorder, ScriptedModel(), 1) == [key_shaped]
    with pytest.raises(ValueError, match="API-key-shaped"):
        recorder.prune()  # what it keeps holds a key-shaped string: not written
    assert cassette.read_bytes() == before
    assert len(recorder.unused()) == 1


async def test_recording_a_long_run_writes_in_linear_time_and_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past a few hundred calls a recorded call goes to the cassette's journal,
    which is folded in as it grows: rewrites stay few, every call is readable
    at once, and the cassette holds them all once its Recorder is gone."""
    import gc

    from stagefx.testing import _recorder

    writes: list[int] = []
    write = _recorder._write  # pyright: ignore[reportPrivateUsage]  # counted, not changed

    def counted(
        path: Path,
        calls: list[tuple[tuple[bytes, bytes], list[tuple[bytes, bytes | None]]]],
        secrets: Iterable[str] = (),
    ) -> None:
        writes.append(sum(len(answers) for _, answers in calls))
        write(path, calls, secrets)

    monkeypatch.setattr(_recorder, "_write", counted)
    cassette = tmp_path / "long.json"
    calls = 600

    def more(*, state: StageState, iteration: int) -> bool:
        return iteration < calls

    ask = Stage.loop(Stage.completion("q").with_volatile_context(), condition=more)
    recorder = Recorder(cassette)
    await ask.execute(env=Env.of(ScriptedModel(*(["a"] * calls)), recorder))
    assert len(writes) <= 256 + 4  # each call while small, then only as the journal doubles
    # Past the first 256, answers written per call recorded stay bounded: linear, not quadratic.
    assert sum(writes[256:]) <= 3 * (calls - 256)
    pending = cassette.with_name(f".{cassette.name}.journal")
    assert pending.exists()
    replay = Recorder(cassette, mode="replay")  # a Recorder reads the journal too
    await ask.execute(env=Env.of(ScriptedModel(), replay))
    with pending.open("ab") as journal:
        journal.write(b'{"model": {"provi')  # a line torn by a crash is skipped
    del recorder, replay
    gc.collect()
    assert not pending.exists()  # folded in when its Recorder went
    assert len(json.loads(cassette.read_text())["calls"]) == calls


CRASHING = """
import os, sys, anyio
from stagefx import Env, ModelOutput, Stage, StageState
from stagefx.testing import FunctionModel, Recorder

calls = 0

def answer(request):
    global calls
    calls += 1
    if calls == int(sys.argv[2]):
        os._exit(17)  # dies as a killed process would: no clean-up, no exit handlers
    return ModelOutput.of(f"answer {calls}")

def more(*, state, iteration):
    return True

async def main():
    ask = Stage.completion("q").with_volatile_context()
    env = Env.of(FunctionModel(answer), Recorder(sys.argv[1]))
    await Stage.loop(ask, condition=more).execute(env=env)

anyio.run(main)
"""


async def test_a_crash_mid_recording_leaves_every_call_recorded_before_it(tmp_path: Path) -> None:
    cassette = tmp_path / "crashed.json"
    with anyio.fail_after(120):
        crashed = await anyio.run_process(
            [sys.executable, "-c", CRASHING, str(cassette), "401"], check=False
        )
    assert crashed.returncode == 17
    assert json.loads(cassette.read_text())["version"] == 1  # the cassette is readable JSON
    replay = Recorder(cassette, mode="replay")
    answers = [f"answer {n}" for n in range(1, 401)]

    def more(*, state: StageState, iteration: int) -> bool:
        return iteration < len(answers)

    ask = Stage.completion("q").with_volatile_context()
    seen: list[str] = []

    def keep(content: MultimodalContent) -> MultimodalContent:
        seen.append(content.as_string())
        return content

    pipeline = Stage.loop(Stage.sequence(ask, Stage.transform_result(keep)), condition=more)
    never = FunctionModel(lambda request: "never asked")  # the recorded model's kind
    await pipeline.execute(env=Env.of(never, replay))
    assert seen == answers  # all 400 calls before the crash, in order
