"""Optional extras: without one, importing what needs it fails with an
`ImportError` that says what to install; `import stagefx` needs none of them."""

from __future__ import annotations

import contextlib
import importlib
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from types import ModuleType

import pytest

EXTRA_SDKS = ("openai", "anthropic", "google", "httpx2", "opentelemetry", "hypothesis", "aiohttp")

# stagefx modules that import an extra: forgotten while an SDK is hidden, so
# importing them again runs their guards
OPTIONAL = (
    "stagefx.openai",
    "stagefx.anthropic",
    "stagefx.gemini",
    "stagefx.testing._fake_anthropic",
    "stagefx.testing._anthropic_codec",
    "stagefx.testing._fake_gemini",
    "stagefx.testing._gemini_codec",
    "stagefx.otel",
    "stagefx.testing.strategies",
    "stagefx.testing.laws",
    "stagefx.testing._fake_openai",
    "stagefx.testing._openai_codec",
    "stagefx.testing._fake_http",
)


def _optional(name: str) -> bool:
    return any(name == module or name.startswith(f"{module}.") for module in OPTIONAL)


def _forget(patch: pytest.MonkeyPatch, name: str) -> None:
    """Drop `name` from sys.modules and from its parent package (restored by `patch`)."""
    patch.delitem(sys.modules, name, raising=False)
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        patch.delattr(sys.modules[parent], child, raising=False)


@contextlib.contextmanager
def hidden(*sdks: str) -> Iterator[None]:
    """Within the block, `sdks` cannot be imported and stagefx's optional modules
    are not loaded; afterwards sys.modules and the packages are as they were.

    Used inside the test body, not as a fixture: pytest plugins (hypothesis's)
    import their package between setup and teardown.
    """
    before = set(sys.modules)
    with pytest.MonkeyPatch.context() as patch:
        for sdk in sdks:
            patch.setitem(sys.modules, sdk, None)
        for name in sorted(filter(_optional, before), reverse=True):
            _forget(patch, name)
        try:
            yield
        finally:
            for name in sorted(set(sys.modules) - before, reverse=True):
                if _optional(name):  # loaded in the block: not to outlive it
                    module = sys.modules.pop(name)
                    parent, _, child = name.rpartition(".")
                    if getattr(sys.modules.get(parent), child, None) is module:
                        delattr(sys.modules[parent], child)


def _caused_by_missing(error: pytest.ExceptionInfo[ImportError], sdk: str) -> bool:
    cause = error.value.__cause__
    return isinstance(cause, ImportError) and (cause.name or "").split(".")[0] == sdk


@pytest.mark.parametrize("sdk", ["openai", "httpx2"])
def test_openai_without_its_client_says_to_install_the_openai_extra(sdk: str) -> None:
    with hidden(sdk), pytest.raises(ImportError) as error:
        importlib.import_module("stagefx.openai")
    assert 'pip install "stagefx[openai]"' in str(error.value)
    assert _caused_by_missing(error, sdk)


@pytest.mark.parametrize(
    ("module", "sdk", "extra"),
    [
        ("stagefx.anthropic", "anthropic", "anthropic"),
        ("stagefx.gemini", "google", "gemini"),
    ],
)
def test_a_provider_without_its_sdk_says_to_install_its_extra(
    module: str, sdk: str, extra: str
) -> None:
    with hidden(sdk), pytest.raises(ImportError) as error:
        importlib.import_module(module)
    assert f'pip install "stagefx[{extra}]"' in str(error.value)


def test_otel_without_opentelemetry_says_to_install_the_otel_extra() -> None:
    with hidden("opentelemetry"), pytest.raises(ImportError) as error:
        importlib.import_module("stagefx.otel")
    assert 'pip install "stagefx[otel]"' in str(error.value)
    assert _caused_by_missing(error, "opentelemetry")


def test_strategies_without_hypothesis_says_to_install_the_testing_extra() -> None:
    with hidden("hypothesis"), pytest.raises(ImportError) as error:
        from stagefx.testing import strategies  # noqa: F401
    assert 'pip install "stagefx[testing]"' in str(error.value)
    assert _caused_by_missing(error, "hypothesis")


def test_laws_without_hypothesis_says_to_install_the_testing_extra() -> None:
    with hidden("hypothesis"), pytest.raises(ImportError) as error:
        from stagefx.testing import laws  # noqa: F401
    assert 'pip install "stagefx[testing]"' in str(error.value)
    assert _caused_by_missing(error, "hypothesis")


@pytest.mark.parametrize("sdk", ["aiohttp", "openai"])
def test_fake_server_without_aiohttp_or_openai_says_what_to_install(sdk: str) -> None:
    with hidden(sdk), pytest.raises(ImportError) as error:
        from stagefx.testing import FakeOpenAIServer  # noqa: F401
    assert 'pip install "stagefx[testing]" "stagefx[openai]"' in str(error.value)
    assert _caused_by_missing(error, sdk)


@pytest.mark.parametrize(
    ("server", "sdk", "extra"),
    [
        ("FakeAnthropicServer", "aiohttp", "anthropic"),
        ("FakeAnthropicServer", "anthropic", "anthropic"),
        ("FakeGeminiServer", "aiohttp", "gemini"),
        ("FakeGeminiServer", "google", "gemini"),
    ],
)
def test_a_fake_server_without_aiohttp_or_its_sdk_says_what_to_install(
    server: str, sdk: str, extra: str
) -> None:
    with hidden(sdk), pytest.raises(ImportError) as error:
        getattr(importlib.import_module("stagefx.testing"), server)
    assert f'pip install "stagefx[testing]" "stagefx[{extra}]"' in str(error.value)
    assert _caused_by_missing(error, sdk)


@pytest.mark.parametrize("name", ["Fault", "RecordedRequest", "SentChunk"])
def test_what_the_fake_servers_share_without_aiohttp_says_to_install_the_testing_extra(
    name: str,
) -> None:
    with hidden("aiohttp"), pytest.raises(ImportError) as error:
        getattr(importlib.import_module("stagefx.testing"), name)
    assert 'pip install "stagefx[testing]"' in str(error.value)
    assert _caused_by_missing(error, "aiohttp")


@pytest.mark.parametrize(
    "name", ["Fault", "RecordedRequest", "SentChunk", "FakeAnthropicServer", "FakeGeminiServer"]
)
def test_what_needs_no_openai_imports_with_openai_hidden(name: str) -> None:
    with hidden("openai"):
        value = getattr(importlib.import_module("stagefx.testing"), name)
        assert value.__module__ == "stagefx.testing"
        assert "stagefx.testing._fake_openai" not in sys.modules
        assert "stagefx.openai" not in sys.modules


def test_a_fake_server_without_openai_still_serves() -> None:
    with hidden("openai"):
        from stagefx.testing import FakeAnthropicServer, Fault

        with FakeAnthropicServer() as server:
            server.inject(Fault.drop())
            assert server.pending_faults == 1
            assert server.base_url.startswith("http://127.0.0.1:")
        assert "stagefx.openai" not in sys.modules


def test_hiding_an_extra_leaves_the_loaded_modules_as_they_were() -> None:
    import stagefx
    import stagefx.openai
    import stagefx.testing

    provider, fake = stagefx.openai, stagefx.testing.FakeOpenAIServer
    with hidden(*EXTRA_SDKS):
        assert "stagefx.openai" not in sys.modules
    assert sys.modules["stagefx.openai"] is provider
    assert stagefx.openai is provider
    assert stagefx.testing.FakeOpenAIServer is fake
    from stagefx.testing import laws, strategies

    assert isinstance(laws, ModuleType)
    assert isinstance(strategies, ModuleType)


@pytest.mark.parametrize("module", ["stagefx", "stagefx.testing"])
def test_importing_the_core_loads_no_extra(module: str) -> None:
    script = textwrap.dedent(
        f"""
        import sys
        import {module}
        print(" ".join(sorted({{name.split(".")[0] for name in sys.modules}})))
        """
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout.split()
    assert "stagefx" in loaded
    assert [sdk for sdk in EXTRA_SDKS if sdk in loaded] == []
