"""`budget-mcp skills install`: copies the shipped skills into Claude Code's skills folder, upgrades copies
nobody changed, and keeps a changed copy unless forced."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from budget_mcp.cli import main
from budget_mcp.skills import MANIFEST, install_skills, skills_source

SHIPPED = sorted(p.parent.name for p in skills_source().glob("*/SKILL.md"))


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A throwaway home, so ~/.claude/skills is never the real one."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def files(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST and "__pycache__" not in p.parts
    }


def test_both_skills_ship_with_budget_mcp() -> None:
    assert SHIPPED == ["budget-analyst", "database-deployment"]


def test_install_copies_every_skill_into_the_users_claude_skills_folder(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["skills", "install"]) == 0
    for name in SHIPPED:
        assert files(home / ".claude" / "skills" / name) == files(skills_source() / name)
    out = capsys.readouterr().out
    assert all(f"{name}" in out and "installed" in out for name in SHIPPED)


def test_install_into_a_project_uses_its_claude_skills_folder(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    assert main(["skills", "install", "--project", str(project)]) == 0
    assert sorted(p.name for p in (project / ".claude" / "skills").iterdir()) == SHIPPED
    assert not (home / ".claude").exists()


def test_installing_again_reports_up_to_date_and_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    main(["skills", "install"])
    capsys.readouterr()
    assert main(["skills", "install"]) == 0
    assert capsys.readouterr().out.count("up to date") == len(SHIPPED)


def test_a_copy_the_user_changed_is_kept_unless_forced(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["skills", "install"])
    edited = home / ".claude" / "skills" / "budget-analyst" / "SKILL.md"
    edited.write_text(edited.read_text() + "\nMy own house rule.\n")
    capsys.readouterr()
    assert main(["skills", "install"]) == 1
    out = capsys.readouterr().out
    assert "kept" in out and "--force" in out
    assert edited.read_text().endswith("My own house rule.\n")

    assert main(["skills", "install", "--force"]) == 0
    assert "replaced" in capsys.readouterr().out
    assert files(edited.parent) == files(skills_source() / "budget-analyst")


def test_a_folder_budget_mcp_did_not_install_is_kept_unless_forced(home: Path) -> None:
    own = home / ".claude" / "skills" / "budget-analyst"
    own.mkdir(parents=True)
    (own / "SKILL.md").write_text("---\nname: budget-analyst\ndescription: mine\n---\n")
    assert main(["skills", "install"]) == 1
    assert (own / "SKILL.md").read_text().endswith("description: mine\n---\n")


def test_an_unchanged_copy_is_upgraded_to_the_new_version(tmp_path: Path) -> None:
    source = tmp_path / "source"
    shutil.copytree(skills_source(), source)
    target = tmp_path / "target"
    install_skills(source, target)
    newer = source / "database-deployment" / "SKILL.md"
    newer.write_text(newer.read_text() + "\nA new section.\n")
    (source / "database-deployment" / "references" / "added.md").write_text("# Added\n")
    results = {r.skill: r.outcome for r in install_skills(source, target)}
    assert results == {"budget-analyst": "up to date", "database-deployment": "updated"}
    assert files(target / "database-deployment") == files(source / "database-deployment")


def test_a_missing_project_directory_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such directory"):
        main(["skills", "install", "--project", str(tmp_path / "nowhere")])


def test_skills_install_needs_no_database_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "not a url")
    assert main(["skills", "install"]) == 0
