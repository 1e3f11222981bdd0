"""HTTP input: no query string, however odd, makes any route answer 5xx; bad values are a 400 that
says why. Property-based over every route the daemon serves, against a real store."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from starlette.routing import Route
from starlette.testclient import TestClient

from monitor.alerting.config import AlertingConfig
from monitor.app import StoreFeatures, build_store_features
from monitor.server import build_app
from monitor.store.config import StoreConfig
from probes.base import Status
from tests.history.history_helpers import T0, FakeClock, result

#: Parameter names the routes read, plus some they do not.
NAMES = ["probe", "since", "limit", "open", "step", "format", "n", "until", "x", ""]
#: Values that broke or could break a parser: huge, negative, non-finite, units, blanks, unicode.
NASTY = [
    "99999999999h",
    "1e309",
    "-1",
    "0",
    "nan",
    "inf",
    "1h30m",
    "30m1h",
    "",
    " ",
    "%00",
    "\x00",
    "ü",
    "9" * 400,
    "1" * 40 + "d",
    "true",
    "[]",
    "../../etc/passwd",
    "<script>",
]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """The daemon's routes (API, status page, health) over a real SQLite store holding a few runs."""
    db = tmp_path_factory.mktemp("api") / "synthmon.db"
    registry = CollectorRegistry()
    clock = FakeClock(T0)
    features: StoreFeatures = build_store_features(
        StoreConfig(url=f"sqlite:///{db}"), AlertingConfig(), {"registration": ["auth"]}, registry, clock
    )
    features.history_store.append_runs(
        [result("auth", Status.PASS, T0), result("registration", Status.FAIL, T0)]
    )
    app = build_app(
        registry=registry,
        health=lambda: (True, {}),
        ready=lambda: (True, {}),
        extra_routes=features.routes,
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c
    features.db.close()
    if features.executor is not None:
        features.executor.shutdown(wait=False)


def _paths(client: TestClient) -> list[str]:
    return sorted({r.path for r in client.app.routes if isinstance(r, Route) and "{" not in r.path})  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.data(),
    params=st.lists(
        st.tuples(st.sampled_from(NAMES), st.one_of(st.sampled_from(NASTY), st.text(max_size=30))),
        max_size=4,
    ),
)
def test_no_query_string_makes_a_route_fail_with_5xx(
    client: TestClient, data: Any, params: list[tuple[str, str]]
) -> None:
    """Every route answers below 500 for any query string; a 400 carries a reason."""
    path = data.draw(st.sampled_from(_paths(client)))
    query = urllib.parse.urlencode(params)
    resp = client.get(f"{path}?{query}" if query else path)
    assert resp.status_code < 500, (path, query, resp.status_code, resp.text[:300])
    if resp.status_code == 400:
        assert resp.json().get("error"), resp.text[:300]


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("since=99999999999h", "since"),
        ("since=1e309", "since"),
        ("since=banana", "since"),
        ("limit=-5", "limit"),
        ("limit=abc", "limit"),
        ("limit=" + "9" * 400, "limit"),
    ],
)
def test_bad_runs_query_is_400_naming_the_parameter(client: TestClient, query: str, reason: str) -> None:
    """The history API refuses out-of-range or malformed values with a 400 that names them."""
    resp = client.get(f"/api/v1/runs?{query}")
    assert resp.status_code == 400, resp.text[:300]
    assert reason in resp.json()["error"]


def test_good_runs_query_still_answers(client: TestClient) -> None:
    """A normal query keeps working (the fuzz checks ran against a live store)."""
    resp = client.get("/api/v1/runs?since=1000d&limit=10")
    assert resp.status_code == 200
    assert {r["probe"] for r in resp.json()["runs"]} == {"auth", "registration"}
