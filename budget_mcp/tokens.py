"""Bearer tokens for the HTTP server: each maps to one user. Only a token's SHA-256 is stored.

A token is 32 random bytes, so a fast hash is enough: nobody can guess a preimage, and verifying a
request costs one indexed lookup.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from . import repository as repo
from .db import utcnow
from .errors import InvalidInput, NotFound
from .models import ApiToken, User

TOKEN_PREFIX = "bmcp_"


@dataclass(frozen=True)
class TokenInfo:
    """What may be shown about a token: never the token or its hash."""

    id: int
    user: str
    label: str | None
    created_at: datetime
    revoked_at: datetime | None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(session: Session, user: str, label: str | None = None) -> tuple[str, TokenInfo]:
    """A new token for ``user`` (created if new). The token is returned once and never stored."""
    user = user.strip()
    if not user:
        raise InvalidInput("a token needs a user name: --user NAME")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=repo.ensure_user(session, user), token_hash=token_hash(token), label=label or None)
    session.add(row)
    session.flush()
    return token, TokenInfo(row.id, user, row.label, row.created_at, None)


def user_for_token(session: Session, token: str) -> str | None:
    """The name of the user a valid, unrevoked token belongs to; None for anything else."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    stmt = (
        select(User.name)
        .join(ApiToken, ApiToken.user_id == User.id)
        .where(ApiToken.token_hash == token_hash(token), ApiToken.revoked_at.is_(None))
    )
    return session.scalar(stmt)


def list_tokens(session: Session) -> list[TokenInfo]:
    stmt = select(ApiToken, User.name).join(User, ApiToken.user_id == User.id).order_by(ApiToken.id)
    return [
        TokenInfo(token.id, name, token.label, token.created_at, token.revoked_at)
        for token, name in session.execute(stmt)
    ]


def revoke_token(session: Session, token_id: int) -> TokenInfo:
    """Revoke a token: requests carrying it are refused from now on. Revoking twice changes nothing."""
    found = session.execute(
        select(ApiToken, User.name).join(User, ApiToken.user_id == User.id).where(ApiToken.id == token_id)
    ).first()
    if found is None:
        raise NotFound(f"no token {token_id}; `budget-mcp token list` shows the tokens")
    token, name = found
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        session.flush()
    return TokenInfo(token.id, name, token.label, token.created_at, token.revoked_at)
