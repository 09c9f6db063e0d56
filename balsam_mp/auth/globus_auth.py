"""Where the site's Globus credentials come from, in order of preference:

1. a service account: GLOBUS_CLIENT_ID + GLOBUS_CLIENT_SECRET (no prompt, no storage);
2. `balsam site globus-login`: globus-sdk's UserApp with its JSON token storage,
   ~/.balsam_mp/globus_tokens.json (file 0600, folder 0700);
3. tokens a `globus login` of the globus CLI left on this machine
   (~/.globus/cli/storage.db, the CLI's own SQLite token storage).

Every source is globus-sdk's own login and storage machinery; nothing here writes a
token file by hand.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import globus_sdk
from globus_sdk.token_storage import JSONTokenStorage, SQLiteTokenStorage
from globus_sdk.transport import RetryConfig

from balsam_mp.errors import BalsamError
from balsam_mp.settings import Settings

APP_NAME = "balsam_mp"
TRANSFER_RS = "transfer.api.globus.org"
GLOBUS_CLI_CLIENT_ID = "95fdeba8-fac2-42bd-a357-e068d82ff78e"  # the globus CLI's native app
RETRIES = RetryConfig(max_retries=3, max_sleep=2)  # then the workers back off themselves


def token_dir() -> Path:
    return Path(os.environ.get("BALSAM_MP_HOME", Path.home() / ".balsam_mp"))


def _token_file() -> Path:
    folder = token_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    return folder / "globus_tokens.json"


@dataclass
class CredentialSource:
    name: str  # "client-credentials" | "balsam-login" | "globus-cli"
    detail: str
    app: globus_sdk.GlobusApp | None = None
    authorizer: globus_sdk.authorizers.GlobusAuthorizer | None = None
    identity: str | None = None

    def transfer_client(self, endpoints: list[str] = ()) -> globus_sdk.TransferClient:
        if self.app is not None:
            client = globus_sdk.TransferClient(app=self.app, retry_config=RETRIES)
            if endpoints:
                client.add_app_data_access_scope(list(endpoints))
            return client
        return globus_sdk.TransferClient(authorizer=self.authorizer, retry_config=RETRIES)


def _user_app(settings: Settings, login_flow_manager=None) -> globus_sdk.UserApp:
    client_id = settings.transfers.globus_client_id
    if not client_id:
        raise BalsamError(
            f"{settings.site_path / 'settings.yml'}: transfers.globus_client_id is not set. "
            "Register a native app at https://app.globus.org/settings/developers "
            "('Register a thick client or script...') and put its client id there, or use a "
            "service account via GLOBUS_CLIENT_ID and GLOBUS_CLIENT_SECRET."
        )
    config = globus_sdk.GlobusAppConfig(
        request_refresh_tokens=True, token_storage=JSONTokenStorage(_token_file()),
        **({"login_flow_manager": login_flow_manager} if login_flow_manager else {}),
    )
    return globus_sdk.UserApp(APP_NAME, client_id=client_id, config=config)


def site_endpoints(settings: Settings, extra: list[str] = ()) -> list[str]:
    """Endpoints the site transfers with: its own, every trusted globus alias, and extra."""
    endpoints = list(extra)
    if settings.transfers.globus_endpoint_id:
        endpoints.append(settings.transfers.globus_endpoint_id)
    for alias in settings.transfers.transfer_locations:
        protocol, address = settings.location(alias)
        if protocol == "globus":
            endpoints.append(address)
    return list(dict.fromkeys(endpoints))


def login(settings: Settings, endpoints: list[str], login_flow_manager=None,
          force: bool = False) -> Path:
    """Interactive login (once), asking data_access consent for every endpoint."""
    app = _user_app(settings, login_flow_manager)
    globus_sdk.TransferClient(app=app).add_app_data_access_scope(
        site_endpoints(settings, endpoints))
    app.login(force=force)
    return _token_file()


def _client_credentials() -> CredentialSource | None:
    client_id, secret = os.environ.get("GLOBUS_CLIENT_ID"), os.environ.get("GLOBUS_CLIENT_SECRET")
    if not (client_id and secret):
        return None
    app = globus_sdk.ClientApp(APP_NAME, client_id=client_id, client_secret=secret,
                               config=globus_sdk.GlobusAppConfig(token_storage="memory"))
    return CredentialSource("client-credentials", f"service account {client_id}", app=app,
                            identity=client_id)


def _balsam_login(settings: Settings) -> CredentialSource | None:
    if not _token_file().exists() or not settings.transfers.globus_client_id:
        return None
    app = _user_app(settings)
    return CredentialSource("balsam-login", str(_token_file()), app=app)


def _globus_cli() -> CredentialSource | None:
    path = Path.home() / ".globus" / "cli" / "storage.db"
    if not path.exists():
        return None
    env = os.environ.get("GLOBUS_SDK_ENVIRONMENT", "production")
    for namespace in (f"user/{env}", f"userprofile/{env}"):
        storage = SQLiteTokenStorage(path, namespace=namespace)
        data = storage.get_token_data(TRANSFER_RS)
        if data is None:
            storage.close()
            continue
        if data.refresh_token:
            authorizer = globus_sdk.RefreshTokenAuthorizer(
                data.refresh_token, globus_sdk.NativeAppAuthClient(GLOBUS_CLI_CLIENT_ID),
                access_token=data.access_token, expires_at=data.expires_at_seconds,
                on_refresh=storage.store_token_response)
        else:
            authorizer = globus_sdk.AccessTokenAuthorizer(data.access_token)
        return CredentialSource("globus-cli", f"{path} ({namespace})", authorizer=authorizer,
                                identity=data.identity_id)
    return None


def find_credentials(settings: Settings) -> CredentialSource:
    for source in (_client_credentials(), _balsam_login(settings), _globus_cli()):
        if source is not None:
            return source
    raise BalsamError(
        "no Globus credentials: run `balsam site globus-login`, set GLOBUS_CLIENT_ID and "
        "GLOBUS_CLIENT_SECRET, or log in with the globus CLI"
    )


def credential_status(settings: Settings) -> dict:
    """Which source is used, whether it works, and which consents are missing."""
    source = find_credentials(settings)
    report = {"source": source.name, "detail": source.detail, "valid": False,
              "missing_consents": [], "error": None}
    endpoints = site_endpoints(settings)
    try:
        if source.app is not None and source.app.login_required():
            report["error"] = "login required: run `balsam site globus-login`"
            return report
        client = source.transfer_client()
        missing = []
        for endpoint in endpoints:
            try:
                client.operation_ls(endpoint, path="/~/")
            except globus_sdk.TransferAPIError as err:
                if err.info.consent_required:
                    missing.append(endpoint)
                elif err.http_status == 401:
                    raise
        report["valid"] = True
        report["missing_consents"] = missing
    except globus_sdk.GlobusAPIError as err:
        report["error"] = f"{err.http_status} {err.code}"
    except globus_sdk.GlobusError as err:
        report["error"] = f"{type(err).__name__}: {err}"
    if report["missing_consents"]:
        report["fix"] = "balsam site globus-login " + " ".join(
            f"-e {ep}" for ep in report["missing_consents"])
    report["checked_at"] = time.time()
    return report
