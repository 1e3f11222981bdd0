"""Probe options are checked at config time: a typo stops check-config, it never becomes an outage."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest

from monitor.config import parse_config
from monitor.configfile import ConfigError
from probes.alb_health import AlbHealthOptions, AlbHealthProbe
from probes.artifact_roundtrip import ArtifactRoundtripOptions, ArtifactRoundtripProbe
from probes.base import Status, StepResult
from probes.mlflow_api import MlflowApiOptions
from probes.registration import RegistrationOptions

#: Every URL option of every kind: (kind, option).
URL_OPTIONS: dict[str, tuple[str, str]] = {
    "http.url": ("http", "url"),
    "auth.auth_url": ("auth", "auth_url"),
    "alb_health.auth_url": ("alb_health", "auth_url"),
    "alb_health.registry_url": ("alb_health", "registry_url"),
    "alb_health.checks.url": ("alb_health", "checks"),
    "mlflow_api.registry_url": ("mlflow_api", "registry_url"),
    "artifact_roundtrip.registry_url": ("artifact_roundtrip", "registry_url"),
    "registration.registry_url": ("registration", "registry_url"),
}


def _config(kind: str, options: str) -> str:
    return (
        "environment: test\n"
        "secrets:\n  api_key: hk_test_" + "x" * 32 + "\n"
        "probes:\n"
        f"  - name: p\n    kind: {kind}\n    interval: 5m\n    timeout: 3m\n"
        f"    options: {options}\n"
    )


def _options(option: str, url: str) -> str:
    if option == "checks":
        return "{checks: [{name: c, url: '" + url + "'}]}"
    return "{" + option + ": '" + url + "'}"


@pytest.mark.parametrize("case", sorted(URL_OPTIONS), ids=sorted(URL_OPTIONS))
@pytest.mark.parametrize("bad", ["auth.example.com", "ftp://auth.example.com", "https://"], ids=str)
def test_url_option_without_http_scheme_is_a_config_error(case: str, bad: str) -> None:
    """A URL option that is not an absolute http(s) URL is refused with the field's path."""
    kind, option = URL_OPTIONS[case]
    with pytest.raises(ConfigError) as err:
        parse_config(_config(kind, _options(option, bad)), source="config.yaml", env={})
    assert "http:// or https://" in str(err.value) or "not a valid URL" in str(err.value)
    assert option in str(err.value)


@pytest.mark.parametrize("case", sorted(URL_OPTIONS), ids=sorted(URL_OPTIONS))
def test_url_option_with_http_scheme_is_accepted(case: str) -> None:
    """An absolute https URL is accepted for every URL option."""
    kind, option = URL_OPTIONS[case]
    config = parse_config(
        _config(kind, _options(option, "https://auth.example.com:8443/base")), source="config.yaml", env={}
    )
    assert config.probes[0].kind == kind


# --- alb_health checks and CA bundle -------------------------------------------------------------

_CHECK = "{name: c1, path: /health}"


@pytest.mark.parametrize(
    ("checks", "message"),
    [
        ("[]", "at least 1"),
        (f"[{_CHECK}, {_CHECK}]", "duplicate check name 'c1'"),
        ("[{name: cert_auth}]", "reserved"),
        ("[{name: c1, method: FETCH}]", "method"),
        ("[{name: 'Registry Health'}]", "name"),
    ],
    ids=["empty", "duplicate", "cert_prefix", "method", "name_not_a_label"],
)
def test_alb_health_rejects_bad_checks(checks: str, message: str) -> None:
    """Empty, duplicate, reserved or badly named checks and unknown methods are config errors."""
    with pytest.raises(ConfigError) as err:
        parse_config(_config("alb_health", "{checks: " + checks + "}"), source="config.yaml", env={})
    assert message in str(err.value)


def test_alb_health_missing_ca_file_is_a_config_error(tmp_path: Path) -> None:
    """A ca_file that does not exist stops the config instead of making every run ERROR."""
    missing = tmp_path / "absent.pem"
    with pytest.raises(ConfigError) as err:
        parse_config(_config("alb_health", "{ca_file: '" + str(missing) + "'}"), source="config.yaml", env={})
    assert "ca_file" in str(err.value)
    assert "does not exist" in str(err.value)


def test_alb_health_unreadable_ca_file_is_a_config_error(tmp_path: Path) -> None:
    """A ca_file that is not a PEM bundle is refused at config time too."""
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigError) as err:
        parse_config(_config("alb_health", "{ca_file: '" + str(junk) + "'}"), source="config.yaml", env={})
    assert "cannot be loaded" in str(err.value)


async def test_alb_health_builds_its_tls_context_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SSL context for certificate steps is built with the probe, not on every run."""
    import httpx
    from probes_helpers import make_ctx, mock

    calls: list[str | None] = []
    real = ssl.create_default_context

    def counting(*args: Any, **kwargs: Any) -> ssl.SSLContext:
        calls.append(kwargs.get("cafile"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    # https on a closed loopback port: the certificate step runs (and fails fast) every run.
    options = AlbHealthOptions(auth_url="https://127.0.0.1:9", checks=({"name": "c1"},))  # type: ignore[arg-type]
    probe = AlbHealthProbe("alb", options)
    assert len(calls) == 1
    for _ in range(3):
        ctx = make_ctx(mock(lambda _r: httpx.Response(200)))
        async with ctx.http:
            steps = await probe.run(ctx)
        assert [s.name for s in steps] == ["c1", "cert_auth"]
    assert len(calls) == 1
    AlbHealthProbe("alb", AlbHealthOptions())  # plain http targets: no context at all
    assert len(calls) == 1


# --- defaults that must fit in a probe's timeout -------------------------------------------------


def test_client_and_wait_defaults_fit_in_the_shipped_timeouts() -> None:
    """Option defaults that bound one step stay below the timeout config.yaml gives the probe."""
    from probes_helpers import DEFAULT_CONFIG

    from monitor.config import load_config

    config = load_config(DEFAULT_CONFIG, env={"SYNTHMON_API_KEY": "hk_test_" + "x" * 32})
    probes = {p.name: p for p in config.probes}
    assert isinstance(probes["alb_health"].options, AlbHealthOptions)
    assert probes["alb_health"].options.client_timeout_s < probes["alb_health"].timeout
    assert isinstance(probes["mlflow_api"].options, MlflowApiOptions)
    assert probes["mlflow_api"].options.client_timeout_s < probes["mlflow_api"].timeout
    assert isinstance(probes["registration"].options, RegistrationOptions)
    assert probes["registration"].options.wait_ready_timeout < probes["registration"].timeout
    # The kinds' own defaults fit in the daemon's default 30 s timeout.
    assert AlbHealthOptions().client_timeout_s < 30
    assert MlflowApiOptions().client_timeout_s < 30
    assert RegistrationOptions().wait_ready_timeout < 30


# --- artifact_roundtrip keeps CPU work off the event loop --------------------------------------


async def test_artifact_payload_and_checksums_are_computed_off_the_event_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Generating the random payload and hashing it back run in worker threads, not the loop's."""
    import random
    import threading

    import httpx
    from probes_helpers import make_ctx, mock

    import probes.artifact_roundtrip as artifact

    stored: dict[str, bytes] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "PUT":
            stored["body"] = request.content
            return httpx.Response(200, json={})
        if request.method == "GET" and request.url.path.endswith("/artifacts"):
            size = str(len(stored["body"]))
            return httpx.Response(200, json={"files": [{"path": "x/payload.bin", "file_size": size}]})
        if request.method == "GET":
            return httpx.Response(200, content=stored["body"])
        return httpx.Response(200, json={})

    threads: dict[str, str] = {}
    real_randbytes, real_verify = random.randbytes, artifact.verify_payload

    def randbytes(n: int) -> bytes:
        threads["randbytes"] = threading.current_thread().name
        return real_randbytes(n)

    def verify(name: str, sent: bytes, got: bytes) -> StepResult:
        threads["verify"] = threading.current_thread().name
        return real_verify(name, sent, got)

    monkeypatch.setattr(artifact.random, "randbytes", randbytes)
    monkeypatch.setattr(artifact, "verify_payload", verify)
    ctx = make_ctx(mock(handler))
    async with ctx.http:
        steps = await ArtifactRoundtripProbe("a", ArtifactRoundtripOptions(payload_bytes=4096)).run(ctx)
    assert [s.status for s in steps] == [Status.PASS] * 5
    loop_thread = threading.current_thread().name
    assert set(threads) == {"randbytes", "verify"}
    assert loop_thread not in threads.values()


def test_step_names_follow_the_options() -> None:
    """Each kind's declared steps follow its options: a check turned off is not a step, an https
    target adds its certificate step, a plain http one does not."""
    from probes.auth import AuthOptions
    from probes.http import HttpOptions

    assert AuthOptions().step_names() == ("health", "ready", "validate", "rejects_invalid_key")
    quiet = AuthOptions(check_ready=False, check_rejects_invalid_key=False)
    assert quiet.step_names() == ("health", "validate")
    assert MlflowApiOptions(client_search=False).step_names()[-1] == "experiment"
    assert HttpOptions(url="http://127.0.0.1:1/", step="get").step_names() == ("get",)
    assert ArtifactRoundtripOptions().step_names() == ("upload", "list", "download", "verify", "delete")
    assert RegistrationOptions().step_names()[2] == "log_model"
    plain = AlbHealthOptions()
    assert plain.step_names() == tuple(c.name for c in plain.checks)
    tls = AlbHealthOptions(registry_url="https://registry.example")
    assert tls.step_names()[-1] == "cert_registry"
    assert AlbHealthOptions(registry_url="https://r.example", check_certificates=False).step_names()[-1] != (
        "cert_registry"
    )
