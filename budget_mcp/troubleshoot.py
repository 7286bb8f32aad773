"""What went wrong with a database connection, in plain words: the fix for what drivers and Neon say."""

from __future__ import annotations

import re

# What drivers and Neon say (first line, any case), and what to do about it. The first match wins.
FIXES: tuple[tuple[str, str], ...] = (
    (
        r"password authentication failed|sasl authentication failed|no password supplied",
        "check the user name and password in {setting} (copy the connection string again from your provider, "
        "e.g. the Neon console; characters like @ : / in the password must be URL-encoded)",
    ),
    (r'role ".*" does not exist', "the user name in {setting} does not exist on the server; check its spelling"),
    (
        r'database ".*" does not exist',
        "the database named in {setting} does not exist: create it (Neon console, Databases; or CREATE "
        "DATABASE) or correct its name at the end of the URL",
    ),
    (r"no encryption", "the server accepts only encrypted connections: add ?sslmode=require to {setting}"),
    (
        r"server does not support ssl",
        "the server does not offer TLS: enable it on the server, or, only on a trusted network, drop sslmode "
        "from {setting} and set BUDGET_MCP_ALLOW_INSECURE_DATABASE=true",
    ),
    (
        r"certificate",
        "the server's certificate could not be verified: point sslrootcert= in {setting} at its CA file "
        "(Neon: sslrootcert=system), or use sslmode=require",
    ),
    (
        r"connection refused",
        "nothing is listening at {address}: start the database server, or correct the host and port in {setting}",
    ),
    (
        r"could not translate host name|name or service not known|nodename nor servname|name resolution",
        "the host name in {setting} cannot be found: check it for typos, and this machine's network and DNS",
    ),
    (
        r"couldn't connect to compute node|timeout expired|timed out|ssl syscall|closed unexpectedly",
        "the server did not answer, or dropped the connection: it may be waking up (a Neon compute takes a "
        "moment; run doctor again), or a firewall, VPN or wrong host or port in {setting} keeps it from being reached",
    ),
    (
        r"too many connections|remaining connection slots",
        "the server has no free connections: lower BUDGET_MCP_POOL_SIZE, stop idle clients, or use the "
        "pooled (-pooler) endpoint",
    ),
    (
        r"endpoint is disabled|exceeded the limit",
        "the provider will not start the database: enable the endpoint, or check the plan's limits, in its console",
    ),
    (r"unsupported startup parameter", "the pooler refuses a startup parameter: remove options=... from {setting}"),
    (r"pg_hba\.conf", "the server does not let this user reach this database from here: ask its administrator"),
    (
        r"unable to open database file",
        "SQLite cannot open the file: check that it and its directory are readable and writable by this user",
    ),
    (
        r"file is not a database|malformed",
        "the file is not a SQLite database (or is damaged): point {setting} at the right file, or move this one "
        "away to start afresh",
    ),
    (r"database is locked", "another process keeps the SQLite file locked: stop it or wait, then run doctor again"),
)


def driver_message(error: BaseException) -> str:
    """The first line of the driver's own message (SQLAlchemy's adds the SQL and a link). It may name hosts
    and users: for logs and the doctor's report, not for an MCP client."""
    text = str(getattr(error, "orig", None) or error)
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def connection_fix(message: str, *, setting: str, address: str) -> str:
    """What to do about a driver's ``message``, naming the ``setting`` to change and the server's ``address``."""
    for pattern, fix in FIXES:
        if re.search(pattern, message, re.IGNORECASE):
            return fix.format(setting=setting, address=address)
    return f"check {setting}, and that the database server is running and reachable from this machine"
