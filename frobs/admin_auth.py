"""The admin token that guards the endpoints which change things by hand.

With no ``backend.auth.adminToken`` configured, those endpoints do not exist
(404).  With one, a request must send ``Authorization: Bearer <token>``;
otherwise it gets 401.  The comparison is constant-time, and the token is never
logged.
"""

from __future__ import annotations

import hmac

from flask import request

from .errors import AuthenticationError, NotFoundError


class AdminAuth:
    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None

    def require(self) -> None:
        if self._token is None:
            raise NotFoundError(
                "Not found: set backend.auth.adminToken to enable the admin endpoints"
            )
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self._token
        ):
            raise AuthenticationError(
                "Send the admin token as 'Authorization: Bearer <token>'"
            )
