"""Install the Claude Code skills shipped in ``skills/`` into ``~/.claude/skills/`` or a project's
``.claude/skills/``.

Each installed skill folder gets a manifest of its files' SHA-256, so a later install can tell a copy
the user changed (left alone unless forced) from one it may safely upgrade.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

MANIFEST = ".budget-mcp-install.json"
Outcome = Literal["installed", "updated", "up to date", "replaced", "kept"]


@dataclass(frozen=True)
class Installed:
    skill: str
    path: Path
    outcome: Outcome


def skills_source() -> Path:
    """The shipped skills: beside the package in a source checkout or editable install, else in the
    ``share/budget-mcp/skills`` folder a wheel installs."""
    for candidate in (
        Path(__file__).resolve().parent.parent / "skills",
        Path(sys.prefix) / "share" / "budget-mcp" / "skills",
    ):
        if candidate.is_dir() and any(candidate.glob("*/SKILL.md")):
            return candidate
    raise FileNotFoundError("the skills that ship with budget-mcp are missing from this installation")


def skills_target(project: Path | None) -> Path:
    """``PROJECT/.claude/skills`` for a project, else the user's ``~/.claude/skills``."""
    return (project / ".claude" / "skills") if project is not None else Path.home() / ".claude" / "skills"


def install_skills(source: Path, target: Path, *, force: bool = False) -> list[Installed]:
    """Copy every skill under ``source`` into ``target``. A copy the user changed since it was installed
    (or one budget-mcp did not install) is kept, unless ``force``."""
    results = []
    for skill in sorted(p.parent for p in source.glob("*/SKILL.md")):
        destination = target / skill.name
        wanted = _hashes(skill)
        if not destination.exists():
            outcome: Outcome = "installed"
        elif _hashes(destination) == wanted:
            outcome = "up to date"
        elif _unchanged_since_install(destination):
            outcome = "updated"
        elif force:
            outcome = "replaced"
        else:
            results.append(Installed(skill.name, destination, "kept"))
            continue
        if outcome != "up to date":
            _copy(skill, destination, wanted)
        results.append(Installed(skill.name, destination, outcome))
    return results


def _hashes(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != MANIFEST and "__pycache__" not in path.parts
    }


def _unchanged_since_install(destination: Path) -> bool:
    try:
        recorded = json.loads((destination / MANIFEST).read_text())
    except (OSError, ValueError):
        return False  # not installed by budget-mcp: the user's own folder
    return isinstance(recorded, dict) and recorded.get("files") == _hashes(destination)


def _copy(skill: Path, destination: Path, hashes: dict[str, str]) -> None:
    """Replace ``destination`` with the skill, atomically enough: built beside it, then swapped in."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{skill.name}-", dir=destination.parent))
    try:
        built = staging / skill.name
        shutil.copytree(skill, built, ignore=shutil.ignore_patterns("__pycache__", MANIFEST))
        (built / MANIFEST).write_text(json.dumps({"files": hashes}, indent=1, sort_keys=True) + "\n")
        if destination.exists():
            shutil.rmtree(destination)
        built.rename(destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
