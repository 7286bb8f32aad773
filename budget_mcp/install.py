"""Add budget-mcp to an MCP client's configuration: Claude Desktop's ``claude_desktop_config.json``, or
Claude Code's user settings (``~/.claude.json``) or a project's ``.mcp.json``.

The entry starts this installation's ``budget-mcp`` by absolute path (clients start servers in an
arbitrary directory, with little of the shell's environment) and carries the settings in effect now.
The client's file is merged, never clobbered: other servers and keys are kept, an entry of the same name
that differs is refused unless forced, and the previous file is kept as a timestamped backup. A file
that is not valid JSON is left alone. The write is atomic (a temporary file renamed over the old one).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import sysconfig
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal, TextIO

from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from .config import Settings, env_var, redact_url

ClientName = Literal["claude-desktop", "claude-code"]
Outcome = Literal["added", "replaced", "already configured"]
CLIENTS: dict[ClientName, str] = {"claude-desktop": "Claude Desktop", "claude-code": "Claude Code"}
DEFAULT_NAME = "budget"
SCRIPT = "budget-mcp"
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what `claude mcp add` accepts as a server name
_NEW_FILE_MODE = 0o600  # the entry may carry a database password
_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # ${NAME}: Claude Code fills it in from its environment
_SECRET_KEYS = frozenset({"password", "sslpassword"})  # URL query parameters that carry one


class InstallError(Exception):
    """The configuration could not (or should not) be changed; nothing was written. The message says why."""


@dataclass(frozen=True)
class InstallResult:
    outcome: Outcome
    path: Path
    backup: Path | None = None


# --- the entry ----------------------------------------------------------------------------------------


def server_command(argv0: str | None = None, executable: str | None = None) -> tuple[str, list[str]]:
    """The absolute command (and arguments) that starts this installation's server.

    The ``budget-mcp`` script being run now (``sys.argv[0]``); else the one installed next to this
    interpreter (a virtualenv's ``bin``/``Scripts``) or in its scripts folder; else ``python -m budget_mcp``
    with this interpreter.
    Symlinks are kept as they are (a pipx or Homebrew link survives upgrades; its target may not).
    """
    argv0 = sys.argv[0] if argv0 is None else argv0
    executable = sys.executable if executable is None else executable
    if argv0 and Path(argv0).stem == SCRIPT and Path(argv0).is_file():
        return os.path.abspath(argv0), []
    if executable:
        # Next to the interpreter (a virtualenv), or in its scripts folder (a system Python on Windows).
        folders = [str(Path(executable).parent)]
        if executable == sys.executable:
            folders.append(sysconfig.get_path("scripts"))
        beside = shutil.which(SCRIPT, path=os.pathsep.join(dict.fromkeys(folders)))
        if beside is not None:
            return os.path.abspath(beside), []
    else:
        raise InstallError("cannot tell which Python runs budget-mcp; add the server to the client by hand")
    return os.path.abspath(executable), ["-m", "budget_mcp"]


def _setting_text(value: object) -> str:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def server_env(settings: Settings) -> dict[str, str]:
    """The settings to hand the server: every one set explicitly (in the environment or the .env file)
    and different from its default, as the variables the server reads. The client starts the server
    elsewhere, without this shell's environment or .env file, so they must travel in the entry."""
    env: dict[str, str] = {}
    for field, info in Settings.model_fields.items():
        if field not in settings.model_fields_set:
            continue
        value = getattr(settings, field)
        if value is None or (info.default_factory is None and value == info.default):
            continue
        env[env_var(field)] = _setting_text(value)
    return env


def has_secret(name: str, value: str) -> bool:
    """Whether an env value carries a password (a database URL with one, in its user info or query)."""
    if not name.startswith("DATABASE_URL") or _REFERENCE.fullmatch(value):
        return False
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return True  # cannot tell: treat it as secret (it is shown as "<unparseable database URL>")
    return bool(url.password) or any(key.lower() in _SECRET_KEYS for key in url.query)


def mask_env(env: Mapping[str, str]) -> dict[str, str]:
    """The env with every database password replaced by ***: the only form that may be printed."""
    return {name: redact_url(value) if has_secret(name, value) else value for name, value in env.items()}


def server_entry(
    client: ClientName,
    settings: Settings,
    *,
    command: tuple[str, list[str]] | None = None,
    shared: bool = False,
) -> dict[str, Any]:
    """The ``mcpServers`` entry for ``client``, in the shape the client itself writes.

    ``shared`` (a project's ``.mcp.json``, meant to be committed): a setting that holds a password is
    written as a ``${NAME}`` reference, which Claude Code fills in from its environment, never as the
    password itself.
    """
    program, args = command if command is not None else server_command()
    env = server_env(settings)
    if shared:
        env = {name: f"${{{name}}}" if has_secret(name, value) else value for name, value in env.items()}
    entry: dict[str, Any] = {"type": "stdio"} if client == "claude-code" else {}
    entry.update(command=program, args=list(args), env=env)
    return entry


def masked_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(entry)
    if isinstance(out.get("env"), dict):
        out["env"] = mask_env(out["env"])
    return out


def snippet(name: str, entry: Mapping[str, Any], *, show_secrets: bool = False) -> str:
    """The JSON to paste into the client's file (database passwords masked unless ``show_secrets``)."""
    shown = dict(entry) if show_secrets else masked_entry(entry)
    return json.dumps({"mcpServers": {name: shown}}, indent=2, ensure_ascii=False)


# --- where the client keeps its configuration -----------------------------------------------------------


def config_path(
    client: ClientName,
    *,
    project: Path | None = None,
    platform: str | None = None,
    environ: Mapping[str, str] | None = None,
    home: Path | None = None,
) -> Path:
    """The file ``client`` reads its MCP servers from.

    Claude Desktop: ``~/Library/Application Support/Claude/`` (macOS), ``%APPDATA%\\Claude\\`` (Windows),
    ``$XDG_CONFIG_HOME/Claude/`` or ``~/.config/Claude/`` (Linux), ``claude_desktop_config.json``.
    Claude Code: ``PROJECT/.mcp.json`` for a project, else ``~/.claude.json`` (``$CLAUDE_CONFIG_DIR/.claude.json``
    when that is set, as Claude Code itself does).
    """
    platform = sys.platform if platform is None else platform
    environ = os.environ if environ is None else environ
    home = Path.home() if home is None else home
    if client == "claude-code":
        if project is not None:
            return project / ".mcp.json"
        config_dir = environ.get("CLAUDE_CONFIG_DIR")
        return (Path(config_dir).expanduser() if config_dir else home) / ".claude.json"
    if project is not None:
        raise InstallError("--project is for Claude Code; Claude Desktop has one configuration per user")
    if platform == "darwin":
        folder = home / "Library" / "Application Support"
    elif platform in {"win32", "cygwin"}:
        appdata = environ.get("APPDATA")
        folder = Path(appdata) if appdata else home / "AppData" / "Roaming"
    else:
        xdg = environ.get("XDG_CONFIG_HOME")
        folder = Path(xdg) if xdg and Path(xdg).is_absolute() else home / ".config"
    return folder / "Claude" / "claude_desktop_config.json"


# --- merging into the file ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    data: dict[str, Any]
    raw: bytes | None  # None: the file does not exist yet
    bom: bool


def _load(path: Path) -> _Loaded:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return _Loaded({}, None, False)
    except OSError as error:
        raise InstallError(f"cannot read {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InstallError(f"{path} is not UTF-8 text; nothing was changed. Fix or move it, then try again") from None
    if not text.strip():
        return _Loaded({}, raw, False)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise InstallError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}); nothing was "
            "changed. Fix the file (or move it away), then run this again"
        ) from None
    if not isinstance(data, dict):
        raise InstallError(f"{path} holds a JSON {type(data).__name__}, not an object; nothing was changed")
    servers = data.get("mcpServers")
    if servers is not None and not isinstance(servers, dict):
        raise InstallError(f'"mcpServers" in {path} is not an object; nothing was changed')
    return _Loaded(data, raw, raw.startswith(b"\xef\xbb\xbf"))


def differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What differs between two entries, one line each, passwords masked: ``env.DATABASE_URL: a -> b``."""

    def show(value: object) -> str:
        return "(not set)" if value is _MISSING else json.dumps(value, ensure_ascii=False)

    old_shown, new_shown = masked_entry(old), masked_entry(new)
    lines = []
    for key in [*new_shown, *(k for k in old_shown if k not in new_shown)]:
        before, after = old_shown.get(key, _MISSING), new_shown.get(key, _MISSING)
        if key == "env" and isinstance(before, dict) and isinstance(after, dict):
            for var in [*after, *(v for v in before if v not in after)]:
                if old.get("env", {}).get(var, _MISSING) != new.get("env", {}).get(var, _MISSING):
                    b, a = before.get(var, _MISSING), after.get(var, _MISSING)
                    lines.append(f"env.{var}: {show(b)} -> {show(a)}" + (" (password differs)" if a == b else ""))
        elif old.get(key, _MISSING) != new.get(key, _MISSING):
            lines.append(f"{key}: {show(before)} -> {show(after)}")
    return lines


_MISSING: Any = object()


def add_server(
    path: Path,
    name: str,
    entry: Mapping[str, Any],
    *,
    force: bool = False,
    now: datetime | None = None,
) -> InstallResult:
    """Merge ``entry`` into ``path``'s ``mcpServers`` as ``name``, keeping everything else in the file.

    The same entry already there: nothing is written. A different one: refused (InstallError listing
    the differences) unless ``force``. Otherwise the file is replaced atomically, with its mode kept and
    the previous version copied to ``<file>.bak-YYYYmmddTHHMMSS``.
    """
    if not _NAME.fullmatch(name):
        raise InstallError(f"server name {name!r}: use 1 to 64 letters, digits, '-' or '_'")
    target = path.resolve() if path.is_symlink() else path  # write through a dotfiles symlink, keep the link
    loaded = _load(target)
    servers = loaded.data.get("mcpServers") or {}
    existing = servers.get(name)
    if existing == dict(entry):
        return InstallResult("already configured", path)
    if existing is not None and not force:
        changed = differences(existing, entry) if isinstance(existing, dict) else ["the entry is not an object"]
        raise InstallError(
            f"{path} already has a server named {name!r} that differs:\n"
            + "".join(f"  {line}\n" for line in changed)
            + "Nothing was changed. --force replaces it; --name NAME adds this one under another name."
        )
    data = dict(loaded.data)
    data["mcpServers"] = {**servers, name: dict(entry)}  # a new name goes last; a replaced one keeps its place
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    backup = _write(target, (b"\xef\xbb\xbf" if loaded.bom else b"") + text.encode("utf-8"), loaded.raw, now)
    return InstallResult("replaced" if existing is not None else "added", path, backup)


def _write(path: Path, content: bytes, previous: bytes | None, now: datetime | None) -> Path | None:
    """Replace ``path`` with ``content`` atomically; back up the previous file. Refuse if the file
    changed since it was read (the client may be writing it right now)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        mode = (path.stat().st_mode & 0o7777) if previous is not None else _NEW_FILE_MODE
    except OSError as error:
        raise InstallError(f"cannot write {path}: {error.strerror or error}") from None
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    backup: Path | None = None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(staging, mode)
        if previous is not None:
            if _current(path) != previous:
                raise InstallError(
                    f"{path} changed while budget-mcp was updating it (is the client running and writing it?); "
                    "nothing was changed, run this again"
                )
            backup = _backup_path(path, now or datetime.now())
            shutil.copy2(path, backup)
        os.replace(staging, path)
    except OSError as error:
        raise InstallError(f"cannot write {path}: {error.strerror or error}; nothing was changed") from None
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return backup


def _current(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _backup_path(path: Path, now: datetime) -> Path:
    base = path.with_name(f"{path.name}.bak-{now:%Y%m%dT%H%M%S}")
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


# --- the command ------------------------------------------------------------------------------------------


def run_install(
    client: ClientName,
    settings: Settings,
    *,
    name: str = DEFAULT_NAME,
    config: Path | None = None,
    project: Path | None = None,
    force: bool = False,
    print_only: bool = False,
    show_secrets: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """``budget-mcp install CLIENT``: add the server to the client's configuration (or, ``print_only``,
    print the snippet and write nothing). Returns the exit status; messages name what happened."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    label = CLIENTS[client]
    try:
        if project is not None and config is not None:
            raise InstallError("give --config or --project, not both")
        if project is not None and not project.is_dir():
            raise InstallError(f"--project {project}: no such directory")
        path = (config if config is not None else config_path(client, project=project)).absolute()
        shared = client == "claude-code" and project is not None and config is None
        entry = server_entry(client, settings, shared=shared)
        if print_only:
            print(snippet(name, entry, show_secrets=show_secrets), file=out)
            hidden = not show_secrets and masked_entry(entry) != entry
            print(
                f"(for {path}{'; the database password is shown as ***, --show-secrets prints it' if hidden else ''})",
                file=err,
            )
            return 0
        result = add_server(path, name, entry, force=force)
    except InstallError as error:
        print(f"budget-mcp: {error}", file=err)
        return 1
    if result.outcome == "already configured":
        print(f"{label}: {name!r} is already configured in {result.path}; nothing changed", file=out)
        return 0
    print(f"{label}: {result.outcome} {name!r} in {result.path}", file=out)
    if result.backup is not None:
        print(f"  the previous file is kept as {result.backup}", file=out)
    print(f"  command: {' '.join([entry['command'], *entry['args']])}", file=out)
    for var, value in mask_env(entry["env"]).items():
        print(f"  env: {var}={value}", file=out)
    if shared and any(value.startswith("${") for value in entry["env"].values()):
        print(
            "  .mcp.json is meant to be shared, so the database password is not in it: Claude Code fills in "
            "${DATABASE_URL} from the environment it starts in.",
            file=out,
        )
    if client == "claude-desktop":
        print("Restart Claude Desktop to load it.", file=out)
    elif shared:
        print("Claude Code asks to approve the project's servers in its next session there.", file=out)
    else:
        print("New Claude Code sessions load it; `claude mcp list` shows it.", file=out)
    return 0
