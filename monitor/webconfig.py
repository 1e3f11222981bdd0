"""The ``web:`` section: TLS and basic auth for the daemon's HTTP endpoints, in the shape of
Prometheus exporter-toolkit's web config (``tls_server_config``, ``basic_auth_users`` with bcrypt
hashes), inline or read from an existing exporter-toolkit file (``config_file``)."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from monitor.configfile import ConfigError, load_document, path_error, read_config_text

#: A bcrypt hash as written by ``htpasswd -B`` or ``python -c 'import bcrypt; ...'``.
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$\d{2}\$[./A-Za-z0-9]{53}$")
#: What synthmon reads of an exporter-toolkit web config file.
_WEB_FILE_KEYS = frozenset({"tls_server_config", "basic_auth_users"})


class TlsServerConfig(BaseModel):
    """The daemon's own certificate: the HTTP endpoints are served over TLS only."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cert_file: str = Field(min_length=1)
    key_file: str = Field(min_length=1)

    @model_validator(mode="after")
    def _loadable(self) -> TlsServerConfig:
        # Checked at load time: a wrong path or a key that does not match the certificate is a
        # config error now, not a daemon that starts and then cannot serve.
        for field in ("cert_file", "key_file"):
            path = getattr(self, field)
            try:
                Path(path).open("rb").close()
            except OSError as exc:
                raise path_error((field,), f"cannot read {path}: {exc.strerror}") from None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(self.cert_file, self.key_file)
        except (OSError, ssl.SSLError) as exc:
            reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or type(exc).__name__
            raise ValueError(f"cannot load the certificate and key: {reason}") from None
        return self


class WebConfig(BaseModel):
    """Who may read the HTTP endpoints, in the shape of Prometheus exporter-toolkit's web config.

    ``tls_server_config`` and ``basic_auth_users`` (name -> bcrypt hash) mean what they mean in a
    ``--web.config.file`` of node_exporter or blackbox_exporter, so one file's content fits both.
    With users set, every endpoint but ``/healthz`` (ECS's liveness check has no credentials)
    needs them; ``/metrics`` too when ``protect_metrics`` is true. ``config_file`` reads both keys
    from such a file instead (relative certificate paths resolve against the file, as there).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    config_file: str | None = None
    tls_server_config: TlsServerConfig | None = None
    basic_auth_users: dict[str, SecretStr] = Field(default_factory=dict)
    #: Off by default: a Prometheus scrape config needs ``basic_auth`` before this can be turned on.
    protect_metrics: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_file(cls, data: Any) -> Any:
        if not isinstance(data, Mapping) or data.get("config_file") is None:
            return data
        inline = sorted(_WEB_FILE_KEYS & set(data))
        if inline:
            raise path_error(("config_file",), f"give config_file or {', '.join(inline)}, not both")
        path = Path(str(data["config_file"]))
        try:
            loaded, _ = load_document(read_config_text(path), source=str(path))
        except ConfigError as exc:
            raise path_error(("config_file",), str(exc)) from None
        loaded = {} if loaded is None else loaded
        if not isinstance(loaded, Mapping):
            raise path_error(("config_file",), f"{path}: the top level must be a mapping")
        unsupported = sorted(str(k) for k in loaded if k not in _WEB_FILE_KEYS)
        if unsupported:
            raise path_error(
                ("config_file",),
                f"{path}: {', '.join(unsupported)} not supported (synthmon reads "
                f"{' and '.join(sorted(_WEB_FILE_KEYS))})",
            )
        tls = loaded.get("tls_server_config")
        if isinstance(tls, Mapping):
            tls = {
                key: str(path.parent / value)
                if key in ("cert_file", "key_file")
                and isinstance(value, str)
                and not Path(value).is_absolute()
                else value
                for key, value in tls.items()
            }
        return {**data, "tls_server_config": tls, "basic_auth_users": loaded.get("basic_auth_users") or {}}

    @field_validator("basic_auth_users")
    @classmethod
    def _bcrypt_hashes(cls, users: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, hashed in users.items():
            if not name or ":" in name:
                raise path_error((name,), "a user name is non-empty and has no ':'")
            if not _BCRYPT_HASH.match(hashed.get_secret_value()):
                # Never the value: a plain password pasted here by mistake must not be echoed.
                raise path_error(
                    (name,),
                    "must be a bcrypt hash ($2b$..., e.g. from htpasswd -nBC 10 USER), not a password",
                )
        return users

    @model_validator(mode="after")
    def _metrics_need_users(self) -> WebConfig:
        if self.protect_metrics and not self.basic_auth_users:
            raise path_error(("protect_metrics",), "needs basic_auth_users (who may read /metrics?)")
        return self
