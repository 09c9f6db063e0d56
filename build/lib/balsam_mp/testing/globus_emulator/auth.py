"""The emulator's Globus Auth: tokens, refresh, login codes, consents, ID tokens.

Enough of Globus Auth for the unmodified globus-sdk to log in (UserApp), refresh,
use client credentials, and check data_access consents. ID tokens are real RS256 JWTs
signed with a key made at start-up, so the SDK's own verification runs.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from globus_sdk.scopes import Scope, ScopeParser

TRANSFER_RS = "transfer.api.globus.org"
TRANSFER_SCOPE = "urn:globus:auth:scope:transfer.api.globus.org:all"
AUTH_RS = "auth.globus.org"
OPENID_SCOPES = ("openid", "profile", "email")
ANONYMOUS = "00000000-0000-4000-8000-000000000000"


def data_access_scope(endpoint: str) -> str:
    return f"https://auth.globus.org/scopes/{endpoint}/data_access"


@dataclass
class Grant:
    identity: str
    client_id: str
    scopes: list[Scope]

    @property
    def names(self) -> list[str]:
        return [scope.scope_string for scope in self.scopes]


def parse_scopes(text: str) -> list[Scope]:
    return ScopeParser.parse(text or TRANSFER_SCOPE)


@dataclass
class AuthState:
    issuer: str = ""
    token_lifetime: int = 3600
    accept_any_token: bool = False
    access: dict[str, tuple[Grant, float]] = field(default_factory=dict)  # token -> expiry
    refresh: dict[str, Grant] = field(default_factory=dict)
    codes: dict[str, Grant] = field(default_factory=dict)
    consents: dict[str, set[str]] = field(default_factory=dict)  # identity -> endpoints
    consent_required: set[str] = field(default_factory=set)  # endpoints that need one
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    # -- grants -----------------------------------------------------------------

    def authorize(self, client_id: str, scope: str, identity: str | None = None) -> str:
        """The consent screen, answered yes: returns the code a browser would get."""
        grant = Grant(identity or str(uuid.uuid4()), client_id, parse_scopes(scope))
        code = secrets.token_urlsafe(16)
        with self.lock:
            self.codes[code] = grant
            self._record_consents(grant)
        return code

    def exchange_code(self, code: str) -> Grant | None:
        with self.lock:
            return self.codes.pop(code, None)

    def client_credentials(self, client_id: str, scope: str) -> Grant:
        # a service account's identity is derived from its client id, as in Globus
        grant = Grant(client_id, client_id, parse_scopes(scope))
        with self.lock:
            self._record_consents(grant)
        return grant

    def from_refresh_token(self, token: str) -> Grant | None:
        with self.lock:
            return self.refresh.get(token)

    def _record_consents(self, grant: Grant) -> None:
        """Each data_access scope asked for (alone or as a dependency) is consented."""
        endpoints = self.consents.setdefault(grant.identity, set())
        pending = list(grant.scopes)
        prefix, suffix = "https://auth.globus.org/scopes/", "/data_access"
        while pending:
            scope = pending.pop()
            pending.extend(scope.dependencies)
            name = scope.scope_string
            if name.startswith(prefix) and name.endswith(suffix):
                endpoints.add(name[len(prefix):-len(suffix)])

    def token_response(self, grant: Grant, refresh_token: str | None = None,
                       with_refresh: bool = True) -> dict:
        """Tokens for every resource server the grant's scopes name."""
        by_server: dict[str, list[Scope]] = {}
        for scope in grant.scopes:
            server = AUTH_RS if scope.scope_string in OPENID_SCOPES else TRANSFER_RS
            by_server.setdefault(server, []).append(scope)
        tokens = []
        with self.lock:
            for server, scopes in by_server.items():
                access = secrets.token_urlsafe(24)
                self.access[access] = (grant, time.time() + self.token_lifetime)
                refresh = refresh_token if refresh_token and server == TRANSFER_RS else None
                if with_refresh and refresh is None:
                    refresh = secrets.token_urlsafe(24)
                if refresh:
                    self.refresh[refresh] = Grant(grant.identity, grant.client_id, scopes)
                tokens.append({"access_token": access, "refresh_token": refresh,
                               "expires_in": self.token_lifetime, "token_type": "Bearer",
                               "scope": " ".join(s.scope_string for s in scopes),
                               "resource_server": server})
        first, *others = tokens
        response = dict(first, other_tokens=others)
        if "openid" in grant.names:
            response["id_token"] = self.id_token(grant)
        return response

    def id_token(self, grant: Grant) -> str:
        now = int(time.time())
        claims = {"sub": grant.identity, "aud": grant.client_id, "iss": self.issuer,
                  "iat": now, "exp": now + self.token_lifetime,
                  "preferred_username": f"{grant.identity[:8]}@emulator.test",
                  "identity_provider": ANONYMOUS}
        return jwt.encode(claims, self.key, algorithm="RS256")

    def jwk(self) -> dict:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        return {"keys": [dict(public, alg="RS256", use="sig")]}

    # -- checks -----------------------------------------------------------------

    def identity_for(self, token: str | None) -> str | None:
        """The identity behind a bearer token, or None if unknown or expired."""
        with self.lock:
            found = self.access.get(token or "")
        if found is None:
            return ANONYMOUS if self.accept_any_token and token else None
        grant, expires = found
        return grant.identity if time.time() < expires else None

    def expire_all_tokens(self) -> None:
        with self.lock:
            self.access = {t: (g, 0.0) for t, (g, _) in self.access.items()}

    def missing_consents(self, identity: str, endpoints: list[str]) -> list[str]:
        with self.lock:
            granted = self.consents.get(identity, set())
            return [ep for ep in endpoints if ep in self.consent_required and ep not in granted]
