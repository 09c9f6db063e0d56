"""Globus credentials for the site: login, token storage, and where tokens come from."""

from balsam_mp.auth.globus_auth import (
    CredentialSource,
    credential_status,
    find_credentials,
    login,
    token_dir,
)

__all__ = ["CredentialSource", "credential_status", "find_credentials", "login", "token_dir"]
