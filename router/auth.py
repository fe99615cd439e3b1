"""Optional API keys: when any are configured, requests must carry `Authorization: Bearer`."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from router.errors import unauthorized


class ApiKeyAuth:
    def __init__(self, keys: Iterable[str]) -> None:
        self._keys = tuple(k.encode() for k in keys if k)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def check(self, authorization: str | None) -> None:
        """Raise a 401 APIError unless the header carries a configured key."""
        if not self._keys:
            return
        if not authorization:
            raise unauthorized("missing API key; send it as 'Authorization: Bearer <key>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("malformed Authorization header; use 'Bearer <key>'")
        given = token.strip().encode()
        # compare against every key so timing does not reveal which prefix matched
        matches = [hmac.compare_digest(given, key) for key in self._keys]
        if not any(matches):
            raise unauthorized("invalid API key; check the key you were given")
