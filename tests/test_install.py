"""`budget-mcp install claude-desktop|claude-code`: the server is merged into the client's JSON config --
other servers and keys kept, a backup of the previous file, never a clobbered or half-written file, and
the database password never printed unless asked for."""

from __future__ import annotations

import io
import json
import os
import shutil
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from budget_mcp.config import Settings
from budget_mcp.install import (
    ClientName,
    InstallError,
    add_server,
    config_path,
    run_install,
    server_command,
    server_entry,
    server_env,
)

PASSWORD = "s3cret-Pa55word"
NEON = f"postgresql://alex:{PASSWORD}@ep-cool-123-pooler.eu-central-1.aws.neon.tech/neondb?sslmode=require"
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")


@pytest.fixture(autouse=True)
def home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A throwaway home and no settings or client locations from the machine running the tests."""
    home = tmp_path / "home"
    home.mkdir()
    for name in list(os.environ):
        if name.startswith(("DATABASE_URL", "BUDGET_MCP_")) or name in {"CLAUDE_CONFIG_DIR", "XDG_CONFIG_HOME"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("USERPROFILE", str(home))
    monkeypatch.setenv("APPDATA", str(home / "AppData" / "Roaming"))
    monkeypatch.chdir(tmp_path)
    return home


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def console_script() -> str:
    found = shutil.which("budget-mcp", path=str(Path(sys.executable).parent))
    assert found is not None, f"budget-mcp is not installed next to {sys.executable}"
    return os.path.abspath(found)


def install(client: ClientName, configured: Settings | None = None, **options: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = run_install(client, configured or settings(), out=out, err=err, **options)
    return code, out.getvalue(), err.getvalue()


def read(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def backups(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.bak-*"))


def leftovers(folder: Path) -> list[str]:
    """Temporary files an interrupted or refused write would leave behind."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


OTHER = {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/alex/Documents"]}


# --- Claude Desktop -----------------------------------------------------------------------------------


def test_installing_into_claude_desktop_creates_its_config_with_the_absolute_command(home: Path) -> None:
    code, out, err = install("claude-desktop")
    path = config_path("claude-desktop")
    assert (code, err) == (0, "")
    assert path.is_relative_to(home)
    assert read(path) == {"mcpServers": {"budget": {"command": console_script(), "args": [], "env": {}}}}
    assert f"added 'budget' in {path}" in out
    assert "Restart Claude Desktop" in out
    assert backups(path) == []  # there was nothing to back up


@POSIX
def test_a_new_config_file_is_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    assert install("claude-desktop", settings(database_url=NEON), config=path)[0] == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_other_servers_and_keys_are_kept_and_the_previous_file_is_backed_up(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    original = {"globalShortcut": "Ctrl+Space", "mcpServers": {"filesystem": OTHER}, "theme": "dark"}
    path.write_text(json.dumps(original, indent=2))
    before = path.read_bytes()
    code, out, _ = install("claude-desktop", config=path)
    assert code == 0
    written = read(path)
    assert list(written) == ["globalShortcut", "mcpServers", "theme"]  # the file keeps its order
    assert written["mcpServers"] == {
        "filesystem": OTHER,
        "budget": {"command": console_script(), "args": [], "env": {}},
    }
    assert {k: v for k, v in written.items() if k != "mcpServers"} == {"globalShortcut": "Ctrl+Space", "theme": "dark"}
    [backup] = backups(path)
    assert backup.read_bytes() == before
    assert f"the previous file is kept as {backup}" in out
    assert leftovers(tmp_path) == []


def test_installing_twice_reports_already_configured_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    install("claude-desktop", config=path)
    first = path.read_bytes()
    code, out, _ = install("claude-desktop", config=path)
    assert code == 0
    assert "'budget' is already configured" in out and "nothing changed" in out
    assert path.read_bytes() == first
    assert backups(path) == []


def test_a_differing_entry_of_the_same_name_is_refused_saying_what_differs(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    old = {"command": "/opt/old/bin/budget-mcp", "args": [], "env": {"DATABASE_URL": NEON}}
    path.write_text(json.dumps({"mcpServers": {"budget": old, "filesystem": OTHER}}))
    before = path.read_bytes()
    code, out, err = install("claude-desktop", settings(timezone="Europe/Berlin"), config=path)
    assert (code, out) == (1, "")
    assert "already has a server named 'budget' that differs" in err
    assert f'command: "/opt/old/bin/budget-mcp" -> "{console_script()}"' in err
    assert 'env.DATABASE_URL: "postgresql://alex:***@' in err and "-> (not set)" in err
    assert 'env.BUDGET_MCP_TIMEZONE: (not set) -> "Europe/Berlin"' in err
    assert "--force" in err
    assert PASSWORD not in err
    assert path.read_bytes() == before
    assert backups(path) == [] and leftovers(tmp_path) == []


def test_force_replaces_a_differing_entry_in_place_and_keeps_a_backup(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    old = {"command": "/opt/old/bin/budget-mcp", "args": []}
    path.write_text(json.dumps({"mcpServers": {"budget": old, "filesystem": OTHER}}))
    before = path.read_bytes()
    code, out, _ = install("claude-desktop", config=path, force=True)
    assert code == 0 and "replaced 'budget'" in out
    servers = read(path)["mcpServers"]
    assert list(servers) == ["budget", "filesystem"]
    assert servers["budget"]["command"] == console_script()
    assert [b.read_bytes() for b in backups(path)] == [before]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"mcpServers": {"filesystem": {"command": "npx",}}}', "is not valid JSON (line 1, column"),
        ('["not", "an", "object"]', "holds a JSON list, not an object"),
        ('{"mcpServers": ["budget"]}', '"mcpServers" in'),
    ],
)
def test_a_config_that_is_not_a_json_object_is_refused_and_left_untouched(
    tmp_path: Path, content: str, expected: str
) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(content)
    code, out, err = install("claude-desktop", config=path, force=True)
    assert (code, out) == (1, "")
    assert expected in err and "nothing was changed" in err
    assert path.read_text() == content
    assert backups(path) == [] and leftovers(tmp_path) == []


def test_an_empty_config_file_is_treated_as_an_empty_object(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("")
    assert install("claude-desktop", config=path)[0] == 0
    assert list(read(path)["mcpServers"]) == ["budget"]


def test_print_shows_the_snippet_with_the_password_masked_and_writes_nothing(home: Path) -> None:
    configured = settings(database_url=NEON, user="alex")
    code, out, err = install("claude-desktop", configured, print_only=True)
    assert code == 0
    snippet = json.loads(out)
    env = snippet["mcpServers"]["budget"]["env"]
    assert env["DATABASE_URL"].startswith("postgresql://alex:***@ep-cool-123-pooler")
    assert env["BUDGET_MCP_USER"] == "alex"
    assert PASSWORD not in out + err
    assert "--show-secrets" in err
    assert not config_path("claude-desktop").exists()
    assert list(home.rglob("*")) == []


def test_print_with_show_secrets_prints_the_password(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    code, out, _ = install(
        "claude-desktop", settings(database_url=NEON), config=path, print_only=True, show_secrets=True
    )
    assert code == 0
    assert json.loads(out)["mcpServers"]["budget"]["env"]["DATABASE_URL"] == NEON
    assert not path.exists()


def test_the_written_config_holds_the_real_url_but_the_messages_mask_it(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    code, out, err = install("claude-desktop", settings(database_url=NEON), config=path)
    assert code == 0
    assert read(path)["mcpServers"]["budget"]["env"] == {"DATABASE_URL": NEON}  # the user's own file
    assert "env: DATABASE_URL=postgresql://alex:***@" in out
    assert PASSWORD not in out + err


@POSIX
def test_the_file_keeps_its_mode_and_so_does_its_backup(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text("{}")
    path.chmod(0o640)
    assert install("claude-desktop", config=path)[0] == 0
    [backup] = backups(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert stat.S_IMODE(backup.stat().st_mode) == 0o640


@POSIX
def test_a_symlinked_config_is_updated_through_the_link(tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    real = dotfiles / "claude_desktop_config.json"
    real.write_text(json.dumps({"mcpServers": {"filesystem": OTHER}}))
    link = tmp_path / "claude_desktop_config.json"
    link.symlink_to(real)
    assert install("claude-desktop", config=link)[0] == 0
    assert link.is_symlink()
    assert set(read(real)["mcpServers"]) == {"filesystem", "budget"}


def test_another_name_adds_a_second_entry(tmp_path: Path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    install("claude-desktop", config=path)
    assert install("claude-desktop", settings(user="household"), config=path, name="budget-household")[0] == 0
    servers = read(path)["mcpServers"]
    assert list(servers) == ["budget", "budget-household"]
    assert servers["budget-household"]["env"] == {"BUDGET_MCP_USER": "household"}


def test_a_server_name_clients_cannot_use_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InstallError, match="server name 'my budget'"):
        add_server(tmp_path / "c.json", "my budget", {"command": "x"})
    assert not (tmp_path / "c.json").exists()


# --- Claude Code --------------------------------------------------------------------------------------


def test_claude_code_user_scope_adds_to_claude_json_keeping_every_other_key(home: Path) -> None:
    path = home / ".claude.json"
    original: dict[str, Any] = {
        "numStartups": 212,
        "installMethod": "npm",
        "autoUpdates": True,
        "tipsHistory": {"new-user-warmup": 7, "memory-command": 3},
        "projects": {"/Users/alex/src/app": {"allowedTools": [], "mcpServers": {"local-only": OTHER}}},
        "oauthAccount": {"emailAddress": "alex@example.com"},
        "userID": "0f1e2d3c",
        "name with unicode": "Zürich ✓",
    }
    path.write_text(json.dumps(original, indent=2, ensure_ascii=False), encoding="utf-8")
    code, out, _ = install("claude-code")
    assert code == 0
    written = read(path)
    assert list(written) == [*original, "mcpServers"]
    assert {k: v for k, v in written.items() if k != "mcpServers"} == original
    assert written["mcpServers"] == {"budget": {"type": "stdio", "command": console_script(), "args": [], "env": {}}}
    assert "New Claude Code sessions load it" in out
    assert [b.read_bytes() for b in backups(path)] == [json.dumps(original, indent=2, ensure_ascii=False).encode()]


def test_claude_code_user_scope_follows_claude_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CLAUDE_CONFIG_DIR", str(tmp_path / "claude-work"))
    assert config_path("claude-code") == tmp_path / "claude-work" / ".claude.json"


def test_claude_code_project_scope_writes_mcp_json_without_the_password(home: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    configured = settings(database_url=NEON, default_currency="EUR")
    code, out, err = install("claude-code", configured, project=project)
    assert (code, err) == (0, "")
    assert read(project / ".mcp.json") == {
        "mcpServers": {
            "budget": {
                "type": "stdio",
                "command": console_script(),
                "args": [],
                "env": {"DATABASE_URL": "${DATABASE_URL}", "BUDGET_MCP_DEFAULT_CURRENCY": "EUR"},
            }
        }
    }
    assert "${DATABASE_URL}" in out
    assert PASSWORD not in (project / ".mcp.json").read_text() + out
    assert not (home / ".claude.json").exists()


def test_claude_code_project_scope_needs_an_existing_directory(tmp_path: Path) -> None:
    code, _, err = install("claude-code", project=tmp_path / "missing")
    assert code == 1 and "no such directory" in err


def test_claude_desktop_has_no_project_scope(tmp_path: Path) -> None:
    code, _, err = install("claude-desktop", project=tmp_path)
    assert code == 1 and "--project is for Claude Code" in err


# --- where the configs live, and what goes in the entry -------------------------------------------------


@pytest.mark.parametrize(
    ("platform", "environ", "expected"),
    [
        ("darwin", {}, "home/Library/Application Support/Claude/claude_desktop_config.json"),
        ("win32", {"APPDATA": "{tmp}/Roaming"}, "Roaming/Claude/claude_desktop_config.json"),
        ("win32", {}, "home/AppData/Roaming/Claude/claude_desktop_config.json"),
        ("linux", {}, "home/.config/Claude/claude_desktop_config.json"),
        ("linux", {"XDG_CONFIG_HOME": "{tmp}/xdg"}, "xdg/Claude/claude_desktop_config.json"),
        ("linux", {"XDG_CONFIG_HOME": "relative/xdg"}, "home/.config/Claude/claude_desktop_config.json"),
    ],
)
def test_claude_desktops_config_is_found_where_each_os_keeps_it(
    tmp_path: Path, platform: str, environ: dict[str, str], expected: str
) -> None:
    environ = {k: v.replace("{tmp}", str(tmp_path)) for k, v in environ.items()}
    found = config_path("claude-desktop", platform=platform, environ=environ, home=tmp_path / "home")
    assert found == tmp_path / expected


@pytest.mark.parametrize("platform", ["darwin", "win32", "linux"])
def test_claude_codes_user_config_is_claude_json_in_the_home_on_every_os(tmp_path: Path, platform: str) -> None:
    assert config_path("claude-code", platform=platform, environ={}, home=tmp_path) == tmp_path / ".claude.json"


def test_the_entry_carries_only_settings_set_explicitly_and_not_at_their_default() -> None:
    configured = settings(
        database_url=NEON,
        user="alex",
        timezone="Europe/Berlin",
        default_currency="USD",  # the default: not needed
        read_only=True,
        statement_timeout=10,
    )
    assert server_env(configured) == {
        "DATABASE_URL": NEON,
        "BUDGET_MCP_USER": "alex",
        "BUDGET_MCP_TIMEZONE": "Europe/Berlin",
        "BUDGET_MCP_READ_ONLY": "true",
        "BUDGET_MCP_STATEMENT_TIMEOUT": "10",
    }
    assert server_env(settings()) == {}


def test_settings_from_the_environment_travel_in_the_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BUDGET_MCP_DEFAULT_CURRENCY", "eur")
    monkeypatch.setenv("BUDGET_MCP_TIMEZONE", "Asia/Tokyo")
    entry = server_entry("claude-desktop", settings(), command=("/bin/budget-mcp", []))
    assert entry == {
        "command": "/bin/budget-mcp",
        "args": [],
        "env": {"BUDGET_MCP_DEFAULT_CURRENCY": "EUR", "BUDGET_MCP_TIMEZONE": "Asia/Tokyo"},
    }


@POSIX
def test_the_command_is_the_running_script_then_the_one_beside_python_then_python_m(tmp_path: Path) -> None:
    script = tmp_path / "bin" / "budget-mcp"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    python = tmp_path / "bin" / "python3"
    assert server_command(str(script), str(python)) == (str(script), [])
    other = tmp_path / "other" / "python3"
    assert server_command("/usr/lib/python3/site-packages/pytest", str(python)) == (str(script), [])
    assert server_command("/usr/bin/pytest", str(other)) == (str(other), ["-m", "budget_mcp"])
