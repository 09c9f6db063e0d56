"""Globus Auth routes: token grants, a browserless authorize, consents, OIDC discovery."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import urlencode

from balsam_mp.testing.globus_emulator.auth import TRANSFER_SCOPE, data_access_scope
from balsam_mp.testing.globus_emulator.request import ApiError, Request
from balsam_mp.testing.globus_emulator.state import Emulator


def _oauth_error(error: str, message: str, status: int = 401) -> ApiError:
    return ApiError(status, error, message, error=error, error_description=message)


def _basic_client(req: Request) -> tuple[str, str] | None:
    header = req.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        return None
    try:
        client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise _oauth_error("invalid_client", "malformed basic credentials") from None
    return client_id, secret


def token(emu: Emulator, req: Request) -> dict:
    grant_type = req.form.get("grant_type")
    basic = _basic_client(req)
    client_id = basic[0] if basic else req.form.get("client_id", "")
    if grant_type == "authorization_code":
        grant = emu.auth.exchange_code(req.form.get("code", ""))
        if grant is None or grant.client_id != client_id:
            raise _oauth_error("invalid_grant", "unknown or used authorization code", 400)
        return emu.auth.token_response(grant)
    if grant_type == "refresh_token":
        refresh = req.form.get("refresh_token", "")
        grant = emu.auth.from_refresh_token(refresh)
        if grant is None:
            raise _oauth_error("invalid_grant", "unknown refresh token", 400)
        return emu.auth.token_response(grant, refresh_token=refresh)
    if grant_type == "client_credentials":
        if basic is None or emu.clients.get(basic[0]) != basic[1]:
            raise _oauth_error("invalid_client", "unknown client id or wrong secret")
        grant = emu.auth.client_credentials(basic[0], req.form.get("scope", ""))
        return emu.auth.token_response(grant, with_refresh=False)
    raise _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r}", 400)


def authorize(emu: Emulator, req: Request) -> tuple[int, dict, dict]:
    """The consent screen, answered yes at once: a code without a browser.

    A localhost redirect_uri gets a 302 with the code, as a local-server login flow
    expects; any other gets the code in a JSON body.
    """
    client_id = req.query.get("client_id", "")
    if not client_id:
        raise _oauth_error("invalid_request", "client_id is required", 400)
    code = emu.auth.authorize(client_id, req.query.get("scope", ""), emu.user_identity)
    redirect = req.query.get("redirect_uri", "")
    if redirect.startswith(("http://127.0.0.1", "http://localhost")):
        query = urlencode({"code": code, "state": req.query.get("state", "")})
        return 302, {"code": code}, {"Location": f"{redirect}?{query}"}
    return 200, {"code": code, "state": req.query.get("state")}, {}


def consents(emu: Emulator, req: Request) -> dict:
    identity = req.params["identity_id"]
    if identity != req.identity:
        raise ApiError(403, "FORBIDDEN", "you may only list your own consents")
    with emu.auth.lock:
        endpoints = sorted(emu.auth.consents.get(identity, set()))
    rows = [_consent(1, TRANSFER_SCOPE, [1], identity)]
    rows += [_consent(n, data_access_scope(ep), [1, n], identity)
             for n, ep in enumerate(endpoints, start=2)]
    return {"consents": rows}


def _consent(consent_id: int, scope_name: str, path: list[int], identity: str) -> dict:
    return {"id": consent_id, "scope_name": scope_name, "dependency_path": path,
            "status": "approved", "allows_refresh": True, "atomically_revocable": False,
            "effective_identity": identity, "auto_approved": False,
            "created": "2026-01-01T00:00:00+00:00", "updated": "2026-01-01T00:00:00+00:00",
            "last_used": None, "scope": f"scope-{consent_id}", "client": "emulator"}


def openid_configuration(emu: Emulator, req: Request) -> dict:
    return {"issuer": emu.auth.issuer, "jwks_uri": f"{emu.base_url}jwk.json",
            "authorization_endpoint": f"{emu.base_url}v2/oauth2/authorize",
            "token_endpoint": f"{emu.base_url}v2/oauth2/token",
            "userinfo_endpoint": f"{emu.base_url}v2/oauth2/userinfo",
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code"], "subject_types_supported": ["public"]}


def jwk(emu: Emulator, req: Request) -> dict:
    return emu.auth.jwk()


def userinfo(emu: Emulator, req: Request) -> dict:
    name = f"{req.identity[:8]}@emulator.test" if req.identity else None
    return {"sub": req.identity, "preferred_username": name,
            "identity_set": [{"sub": req.identity, "username": name}]}


def revoke(emu: Emulator, req: Request) -> dict:
    with emu.auth.lock:
        emu.auth.access.pop(req.form.get("token", ""), None)
        emu.auth.refresh.pop(req.form.get("token", ""), None)
    return {"active": False}


def auth_code_page(emu: Emulator, req: Request) -> dict:
    """Where a native app's login lands: Globus shows the code for the user to paste."""
    return {"code": req.query.get("code"), "state": req.query.get("state")}
