"""Bearer-token checks, one rule for every guarded route: 401 without a token, 403 with a wrong one."""
from __future__ import annotations

import hmac
from collections.abc import Sequence

from fastapi.security import HTTPAuthorizationCredentials

from pickwise.api.http.errors import HttpError


def check_bearer(credentials: HTTPAuthorizationCredentials | None, accepted: Sequence[str], *, missing: str,
                 wrong: str, codes: tuple[str, str] = ("unauthorized", "forbidden")) -> None:
    """Pass when the bearer token is one of `accepted`; every one is compared, each in constant time, so
    neither the token nor how many match shows in the timing. `missing`/`wrong` are the 401/403 messages."""
    if credentials is None:
        raise HttpError(401, codes[0], missing, headers={"WWW-Authenticate": "Bearer"})
    given = credentials.credentials.encode()
    if not sum(hmac.compare_digest(given, token.encode()) for token in accepted):
        raise HttpError(403, codes[1], wrong)
