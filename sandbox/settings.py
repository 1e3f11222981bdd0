"""Settings of the sandbox platform process, and the API keys it defines.

The parent (:class:`sandbox.Sandbox`) builds a :class:`PlatformSettings` and hands it to the platform
process as JSON on stdin, never on argv or in a file: it holds the keys and the admin token.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import asdict, dataclass, field
from typing import Any

#: The prefix of every sandbox key: the contract's test-key form, ``hk_test_`` + 32 characters.
KEY_PREFIX = "hk_test_"
_KEY_ALPHABET = string.ascii_letters + string.digits


def generate_key() -> str:
    """A fresh random key of the platform's form (``hk_test_`` + 32 alphanumerics)."""
    return KEY_PREFIX + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(32))


def mask_key(key: str) -> str:
    """The only form in which a key may be shown: ``hk_test_ab...wxyz``."""
    if len(key) <= len(KEY_PREFIX) + 6:
        return KEY_PREFIX + "..."
    return f"{key[: len(KEY_PREFIX) + 2]}...{key[-4:]}"


@dataclass(frozen=True, slots=True)
class SandboxKeys:
    """The keys the sandbox's auth service knows, generated anew on every start.

    ``admin`` is the monitoring key (registry-admin scope), ``non_admin`` validates but is refused on
    registry paths, ``revoked`` is known but revoked (401). The repr is masked, so a key never lands in
    a traceback or a pytest report.
    """

    admin: str
    non_admin: str
    revoked: str

    @classmethod
    def generate(cls) -> SandboxKeys:
        """Three fresh, distinct random keys."""
        return cls(admin=generate_key(), non_admin=generate_key(), revoked=generate_key())

    def __getitem__(self, name: str) -> str:
        """``keys["admin"]`` as well as ``keys.admin``."""
        if name not in ("admin", "non_admin", "revoked"):
            raise KeyError(name)
        value: str = getattr(self, name)
        return value

    def __repr__(self) -> str:
        return (
            f"SandboxKeys(admin={mask_key(self.admin)!r}, non_admin={mask_key(self.non_admin)!r}, "
            f"revoked={mask_key(self.revoked)!r})"
        )

    def masked(self) -> dict[str, str]:
        """The keys in their printable, masked form."""
        return {
            "admin": mask_key(self.admin),
            "non_admin": mask_key(self.non_admin),
            "revoked": mask_key(self.revoked),
        }


@dataclass(frozen=True, slots=True)
class Delays:
    """Timings of the slow faults and of the proxy, short by default so tests never wait long.

    ``upstream_timeout_s`` is the proxy's MLflow read timeout (production: 30 s), which is how long
    ``mlflow-timeout`` takes to become a 504; healthy sandbox MLflow calls take well under 0.5 s.
    ``auth_timeout_s`` is the proxy's timeout on key validation (production: 5 s). The slow faults
    stay below both, so they slow calls down without failing them.
    """

    auth_slow_s: float = 2.0
    mlflow_slow_s: float = 2.0
    artifacts_slow_s: float = 2.0
    upstream_timeout_s: float = 3.0
    auth_timeout_s: float = 5.0
    key_cache_ttl_s: float = 30.0


@dataclass(frozen=True, slots=True)
class PlatformSettings:
    """Everything the platform process (auth, registry, admin listeners) needs to run."""

    workdir: str
    mlflow_url: str
    keys: SandboxKeys
    admin_token: str
    host: str = "127.0.0.1"
    auth_port: int = 8101
    registry_port: int = 8102
    #: When a requested port is taken, bind a free one instead of failing.
    fallback_to_free_port: bool = True
    #: MLflow 3.x serves everything under its ``--static-prefix``; the proxy forwards there.
    mlflow_prefix: str = "/mlflow"
    accepted_service_ids: tuple[str, ...] = ("platform", "website", "prediction")
    #: The service id the registry validates keys for (the seed's lesson: ``platform``).
    registry_service_id: str = "platform"
    delays: Delays = field(default_factory=Delays)
    faults: tuple[str, ...] = ()
    #: Process group of the MLflow server, killed when the platform process is told to stop (so a
    #: parent killed with SIGKILL still leaves no MLflow behind).
    mlflow_pgid: int | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (secrets included: only for the child's stdin)."""
        return asdict(self)

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> PlatformSettings:
        """The inverse of :meth:`to_json_dict`."""
        values = dict(data)
        values["keys"] = SandboxKeys(**values["keys"])
        values["delays"] = Delays(**values["delays"])
        values["accepted_service_ids"] = tuple(values["accepted_service_ids"])
        values["faults"] = tuple(values["faults"])
        return cls(**values)
