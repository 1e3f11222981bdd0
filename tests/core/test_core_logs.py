"""Logs: one JSON object per line, every secret masked (values, key-shaped strings, tracebacks)."""

from __future__ import annotations

import io
import json
import logging

from monitor.logs import Throttle, make_logger
from monitor.stdlib_logs import route_stdlib_logging
from probes.support.masking import MASK, SecretMasker

KEY = "hk_live_" + "z" * 32
SLACK = "xoxb-" + "1234567890-abcdefghij"


def test_masker_masks_configured_and_key_shaped_values() -> None:
    """Configured values are masked anywhere in a text; unknown hk_/xox tokens are masked too."""
    masker = SecretMasker(["s3cr3t-value"])
    text = masker.mask(f"a s3cr3t-value b {KEY} c {SLACK} d hk_test_{'y' * 32}")
    assert text == f"a {MASK} b {MASK} c {MASK} d {MASK}"


def test_masker_update_replaces_values() -> None:
    """After a reload the new secret is masked (and a dropped one no longer needs to be)."""
    masker = SecretMasker(["old-secret"])
    masker.update(["new-secret"])
    assert masker.mask("old-secret new-secret") == f"old-secret {MASK}"


def test_logger_writes_json_lines_and_masks_everything() -> None:
    """Event fields, nested values and exception tracebacks are masked before rendering."""
    stream = io.StringIO()
    logger = make_logger(SecretMasker(["p4ssw0rd!"]), stream=stream, json=True)
    logger.info("probe.finished", probe="auth", detail={"header": "Bearer p4ssw0rd!"}, items=["p4ssw0rd!"])
    try:
        raise RuntimeError(f"upstream rejected {KEY}")
    except RuntimeError:
        logger.exception("probe.exception")
    lines = stream.getvalue().splitlines()
    first = json.loads(lines[0])
    assert (first["event"], first["probe"], first["level"]) == ("probe.finished", "auth", "info")
    assert first["detail"] == {"header": f"Bearer {MASK}"}
    assert "timestamp" in first
    assert "RuntimeError" in json.loads(lines[1])["exception"]
    assert "p4ssw0rd!" not in stream.getvalue()
    assert KEY not in stream.getvalue()


def test_level_filter_drops_debug() -> None:
    """At level info, debug events are not written."""
    stream = io.StringIO()
    logger = make_logger(SecretMasker(), stream=stream, json=True, level="info")
    logger.debug("noisy")
    assert stream.getvalue() == ""


def test_stdlib_records_are_forwarded_and_masked() -> None:
    """Library loggers (uvicorn, apscheduler) land in the same masked stream."""
    stream = io.StringIO()
    logger = make_logger(SecretMasker(), stream=stream, json=True)
    handler = route_stdlib_logging(logger, level="warning")
    try:
        logging.getLogger("apscheduler.test").warning("job failed with %s", KEY)
    finally:
        logging.getLogger().removeHandler(handler)
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["event"] == f"job failed with {MASK}"
    assert line["logger"] == "apscheduler.test"


def test_throttle_logs_the_first_then_once_per_window_with_what_it_left_out() -> None:
    """A key's first event is logged; the next within the window are counted, and the first line
    after the window carries their count (weighted by how many events each stands for)."""
    now = [100.0]
    throttle = Throttle(60.0, monotonic=lambda: now[0])
    assert throttle.allow("a") == 0
    assert throttle.allow("a") is None
    assert throttle.allow("a", 5) is None
    assert throttle.allow("b") == 0  # keys are apart
    now[0] += 59.9
    assert throttle.allow("a") is None
    now[0] += 0.2
    assert throttle.allow("a") == 7
    assert throttle.allow("a") is None
    now[0] += 61
    assert throttle.allow("a") == 1
    assert throttle.allow("b") == 0


def test_throttle_forgets_quiet_keys_but_never_a_pending_count() -> None:
    """With many keys, those quiet for a window with nothing left out are dropped; one holding a
    count keeps it for its next line."""
    now = [0.0]
    throttle = Throttle(10.0, monotonic=lambda: now[0])
    throttle.allow("pending")
    assert throttle.allow("pending") is None
    for i in range(2000):
        throttle.allow(i)
    now[0] += 11
    throttle.allow("trigger")  # the table is full: quiet keys go
    assert len(throttle._last) < 1100
    assert throttle.allow("pending") == 1
