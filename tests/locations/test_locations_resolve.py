"""Where a daemon probes from: config > SYNTHMON_LOCATION > ECS task metadata > "default".

The ECS path runs against a real local HTTP server serving a task metadata document, as the ECS
agent does at ``$ECS_CONTAINER_METADATA_URI_V4/task``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from monitor.config import parse_config
from monitor.configfile import ConfigError
from monitor.location import DEFAULT_LOCATION, resolve_location

TASK_ARN = "arn:aws:ecs:eu-west-1:123456789012:task/platform/0123456789abcdef"


class Metadata:
    """A local ECS metadata endpoint: ``/task`` answers ``document`` (or ``status``), counting calls."""

    def __init__(self) -> None:
        self.document: Any = {}
        self.status = 200
        self.paths: list[str] = []
        meta = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet test output
                pass

            def do_GET(self) -> None:
                meta.paths.append(self.path)
                body = json.dumps(meta.document).encode() if meta.status == 200 else b"nope"
                self.send_response(meta.status if self.path.endswith("/task") else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.uri = f"http://127.0.0.1:{self.server.server_address[1]}/v4/abc-123"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def metadata() -> Iterator[Metadata]:
    """A running metadata endpoint for one test."""
    meta = Metadata()
    try:
        yield meta
    finally:
        meta.close()


def test_config_wins_over_environment_and_metadata(metadata: Metadata) -> None:
    """``location:`` in the config is used as is; nothing else is asked."""
    env = {"SYNTHMON_LOCATION": "from-env", "ECS_CONTAINER_METADATA_URI_V4": metadata.uri}
    assert resolve_location("eu-west-1a", env) == "eu-west-1a"
    assert metadata.paths == []


def test_environment_wins_over_metadata(metadata: Metadata) -> None:
    """``SYNTHMON_LOCATION`` is used before the ECS metadata is asked."""
    env = {"SYNTHMON_LOCATION": "site-2", "ECS_CONTAINER_METADATA_URI_V4": metadata.uri}
    assert resolve_location(None, env) == "site-2"
    assert metadata.paths == []


@pytest.mark.parametrize(
    ("document", "env", "want"),
    [
        ({"AvailabilityZone": "eu-west-1b", "TaskARN": TASK_ARN}, {}, "eu-west-1b"),
        ({"TaskARN": TASK_ARN}, {"AWS_REGION": "us-east-1"}, "eu-west-1"),
        ({"Cluster": "platform"}, {"AWS_REGION": "us-east-1"}, "us-east-1"),
        ({"Cluster": "platform"}, {}, DEFAULT_LOCATION),
    ],
    ids=["availability-zone", "region-of-the-task-arn", "aws-region", "nothing-usable"],
)
def test_ecs_task_metadata_gives_the_zone_else_the_region(
    metadata: Metadata, document: dict[str, str], env: dict[str, str], want: str
) -> None:
    """On ECS the task's availability zone is the location; without one, its region."""
    metadata.document = document
    got = resolve_location(None, {"ECS_CONTAINER_METADATA_URI_V4": metadata.uri, **env})
    assert got == want
    assert metadata.paths == ["/v4/abc-123/task"]


def test_an_unreachable_or_failing_endpoint_is_logged_and_falls_back(metadata: Metadata) -> None:
    """A broken metadata endpoint never stops start-up: logged, then the region or the default."""
    metadata.status = 500
    log = structlog.get_logger("test")
    with capture_logs() as logs:
        got = resolve_location(
            None, {"ECS_CONTAINER_METADATA_URI_V4": metadata.uri, "AWS_REGION": "eu-central-1"}, logger=log
        )
    assert got == "eu-central-1"
    assert [e["event"] for e in logs] == ["location.ecs_metadata_failed"]
    assert logs[0]["error"] == "HTTPStatusError"
    # Nothing listens there (the server is gone): a connect error, the default location.
    metadata.close()
    with capture_logs() as logs:
        got = resolve_location(None, {"ECS_CONTAINER_METADATA_URI_V4": metadata.uri}, logger=log, timeout_s=1)
    assert got == DEFAULT_LOCATION
    assert logs[0]["event"] == "location.ecs_metadata_failed"


def test_an_invalid_environment_value_is_logged_and_skipped() -> None:
    """A location becomes a label value: one outside [A-Za-z0-9_.-] is refused, loudly."""
    with capture_logs() as logs:
        got = resolve_location(None, {"SYNTHMON_LOCATION": "eu west"}, logger=structlog.get_logger("t"))
    assert got == DEFAULT_LOCATION
    assert logs[0]["event"] == "location.invalid"


def test_without_anything_the_location_is_the_default() -> None:
    """No config, no environment, not on ECS: the single-location default."""
    assert resolve_location(None, {}) == DEFAULT_LOCATION


def test_config_location_is_validated_with_the_config() -> None:
    """A bad ``location:`` stops start-up with an error naming the field."""
    base = "environment: prod\nsecrets: {}\nprobes: []\n"
    assert parse_config(base + "location: eu-west-1a\n").location == "eu-west-1a"
    assert parse_config(base).location is None
    with pytest.raises(ConfigError, match="location"):
        parse_config(base + "location: 'eu west'\n")
    # The location is a column of 100 characters: a longer one would fail every stored run.
    with pytest.raises(ConfigError, match="location"):
        parse_config(base + f"location: {'a' * 101}\n")


def test_a_location_too_long_to_store_is_skipped_from_every_source(metadata: Metadata) -> None:
    """An environment or metadata value longer than the stored column is refused like a bad one."""
    with capture_logs() as logs:
        got = resolve_location(None, {"SYNTHMON_LOCATION": "a" * 101}, logger=structlog.get_logger("t"))
    assert got == DEFAULT_LOCATION
    assert logs[0]["event"] == "location.invalid"
    metadata.document = {"AvailabilityZone": "z" * 101, "TaskARN": TASK_ARN}
    got = resolve_location(None, {"ECS_CONTAINER_METADATA_URI_V4": metadata.uri}, timeout_s=1)
    assert got == "eu-west-1"
