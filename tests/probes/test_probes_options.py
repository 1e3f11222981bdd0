"""Probe options are checked at config time: a typo stops check-config, it never becomes an outage."""

from __future__ import annotations

import pytest

from monitor.config import ConfigError, parse_config

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
        "secrets:\n  api_key: hk_test_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n"
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
