"""Where the end-to-end tests find the real MCP clients they drive budget-mcp with: the official Inspector
(CLI mode), the protocol conformance suite, and the Node 22 both run on. ``.ci/run`` installs them, pinned
by ``e2e/package-lock.json``, with ``npm ci --prefix e2e``.

In CI (``CI=true``) a missing or stale install fails the test loudly; elsewhere the test is skipped and
the reason says how to install.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

E2E = Path(__file__).resolve().parent.parent / "e2e"
MODULES = E2E / "node_modules"
INSTALL = "npm ci --prefix e2e"
NODE = MODULES / "node" / "bin" / "node"
"""Node 22 from the npm package ``node``: the conformance suite needs Node >= 22 (the machine has 20)."""


@dataclass(frozen=True)
class NodeTool:
    package: str
    entry: str  # the package's command-line script, relative to its folder

    @property
    def folder(self) -> Path:
        return MODULES / self.package

    @property
    def pinned(self) -> str:
        dependencies: dict[str, str] = json.loads((E2E / "package.json").read_text())["dependencies"]
        return dependencies[self.package]

    def installed_version(self) -> str | None:
        try:
            version: str = json.loads((self.folder / "package.json").read_text())["version"]
        except (OSError, ValueError, KeyError):
            return None
        return version


INSPECTOR = NodeTool("@modelcontextprotocol/inspector", "clients/launcher/build/index.js")
CONFORMANCE = NodeTool("@modelcontextprotocol/conformance", "dist/index.js")


def _unavailable(reason: str) -> None:
    message = f"{reason}; install the e2e clients with `{INSTALL}`"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message} (.ci/run does this; in CI a missing tool is an error)", pytrace=False)
    pytest.skip(message)


def require(tool: NodeTool) -> list[str]:
    """The command that runs ``tool`` on Node 22: ``[node, script]``. Fails in CI, skips elsewhere, when the
    install is missing or is not the pinned version."""
    if not NODE.is_file() or not os.access(NODE, os.X_OK):
        _unavailable(f"Node 22 is not installed at {NODE}")
    installed = tool.installed_version()
    if installed is None or not (tool.folder / tool.entry).is_file():
        _unavailable(f"{tool.package} is not installed in {MODULES}")
    elif installed != tool.pinned:
        _unavailable(f"{tool.package} {installed} is installed, but e2e/package.json pins {tool.pinned}")
    return [str(NODE), str(tool.folder / tool.entry)]


def node_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A small environment for a Node client: PATH, locale, HOME in a temporary folder (the Inspector keeps
    a catalog and client config under HOME) and no budget-mcp setting, so the server a client starts sees
    only what the test gives it."""
    env = {key: os.environ[key] for key in ("PATH", "LANG", "LC_ALL", "TMPDIR") if key in os.environ}
    env.update(HOME=str(home), NO_COLOR="1")
    env.update(extra or {})
    return env


def run_node(
    command: Sequence[str], env: Mapping[str, str], cwd: Path, *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """Run a Node client to completion, capturing stdout and stderr apart."""
    return subprocess.run(
        list(command),
        env=dict(env),
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
