"""The status page as a person sees it: rendered by headless Chromium (Debian package ``chromium``)
from a real HTTP server over a real SQLite store, in the healthy and the seed states.

Each state is checked twice: the DOM after rendering (``--dump-dom``: banner text, cause words,
failing steps, bar cells, the full message) and a screenshot (``--screenshot``: the banner's colour
covers the top of the page). The server listens before Chromium starts (the socket is bound and
listening first), so nothing waits on time.
"""

from __future__ import annotations

import shutil
import socket
import struct
import subprocess
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette

from monitor.api import StatusApi
from monitor.statuspage import BAR_RUNS

from .history_helpers import T0, FakeClock, FullStore, open_store
from .statuspage_states import (
    FAILING,
    INCIDENT_ID,
    SEED_FAILURES,
    STEPS,
    UPLOAD_MESSAGE,
    fill_healthy,
    fill_seed,
)

CHROMIUM = shutil.which("chromium")
NOW = T0 + timedelta(hours=2)
WIDTH = 1000

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")


# ---- a real server and a real browser ---------------------------------------------------------------


@contextmanager
def serve(store: FullStore) -> Iterator[str]:
    """The API routes over ``store`` on a loopback port, served by uvicorn in a thread."""
    app = Starlette(
        routes=StatusApi(store.history, store.alerting, FakeClock(NOW), environment="staging").routes()
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections queue from now on, before uvicorn accepts them
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


def chromium(tmp_path: Path, url: str, *args: str) -> str:
    """Run headless Chromium once on ``url`` (its own profile, bounded in time); its stdout."""
    assert CHROMIUM is not None
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"
    proc = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",  # the tests run as root in CI
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",
            f"--window-size={WIDTH},1600",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


# ---- the rendered DOM ------------------------------------------------------------------------------


@dataclass
class Node:
    """One element of the rendered document."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        """Its text as a person reads it (whitespace collapsed)."""
        parts = [c if isinstance(c, str) else c.text() for c in self.children]
        return " ".join("".join(parts).split()) if self.tag != "pre" else "".join(parts)

    def all(self, tag: str | None = None, cls: str | None = None) -> list[Node]:
        """Every descendant with ``tag`` and/or CSS class ``cls``, in document order."""
        out = []
        for child in self.children:
            if isinstance(child, Node):
                if (tag is None or child.tag == tag) and (
                    cls is None or cls in child.attrs.get("class", "").split()
                ):
                    out.append(child)
                out += child.all(tag, cls)
        return out


_VOID = {"meta", "link", "br", "img", "input", "hr", "area", "base", "col", "source", "wbr"}


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in _VOID:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def dom(html: str) -> Node:
    """The document Chromium rendered, as a tree."""
    builder = _Builder()
    builder.feed(html)
    builder.close()
    return builder.root


def cards(doc: Node) -> dict[str, Node]:
    """The probe cards by probe name."""
    return {c.attrs["data-probe"]: c for c in doc.all("section", "card")}


def cell_statuses(bar: Node) -> list[str]:
    """The status of each cell of a bar, oldest first."""
    return [c.attrs["data-status"] for c in bar.all("span", "cell")]


# ---- the screenshot --------------------------------------------------------------------------------


def top_rows(png: bytes, rows: int) -> list[bytes]:
    """The first ``rows`` pixel rows of an 8-bit RGB(A), non-interlaced PNG as RGB bytes (stdlib only)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", b""
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        header = data if kind == b"IHDR" else header
        idat += data if kind == b"IDAT" else b""
        pos += 12 + length
    width, _height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour in (2, 6), interlace) == (8, True, 0), header
    bpp = 4 if colour == 6 else 3
    stride = width * bpp
    raw = zlib.decompressobj().decompress(idat, (stride + 1) * rows)
    out, prev = [], bytearray(stride)
    for y in range(rows):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        prev = line
        out.append(bytes(v for i, v in enumerate(line) if i % bpp < 3))
    return out


def share_of_colour(rows: list[bytes], rgb: tuple[int, int, int]) -> float:
    """How much of ``rows`` is painted in ``rgb`` (within a small tolerance for anti-aliasing)."""
    hits = total = 0
    for row in rows:
        for i in range(0, len(row), 3):
            total += 1
            hits += all(abs(row[i + k] - rgb[k]) <= 3 for k in range(3))
    return hits / total


BANNER_GREEN = (0x2E, 0x7D, 0x32)
BANNER_RED = (0xB7, 0x1C, 0x1C)


def screenshot(tmp_path: Path, url: str, name: str) -> list[bytes]:
    """A screenshot of ``url`` (kept in ``tmp_path``); its top 240 pixel rows."""
    path = tmp_path / f"{name}.png"
    chromium(tmp_path, url, f"--screenshot={path}")
    return top_rows(path.read_bytes(), 240)


# ---- the two states --------------------------------------------------------------------------------


def test_healthy_page_in_chromium(tmp_path: Path) -> None:
    """Five passing probes: a green "all passing" banner, five PASS cards, full bars of PASS cells,
    every step listed, no failure block."""
    with open_store("sqlite", tmp_path) as store:
        fill_healthy(store, NOW)
        with serve(store) as url:
            doc = dom(chromium(tmp_path, url, "--dump-dom"))
            top = screenshot(tmp_path, url, "healthy")
    [banner] = [n for n in doc.all("section") if n.attrs.get("id") == "banner"]
    assert banner.text() == "All 5 probes passing"
    assert doc.all(tag="script") == []
    by_probe = cards(doc)
    assert sorted(by_probe) == sorted(STEPS)
    for probe, card in by_probe.items():
        assert card.attrs["data-status"] == "PASS"
        assert "uptime 24h 100.00% · 7d 100.00% · 30d 100.00%" in card.text()
        bars = card.all("div", "bar")
        assert len(bars) == 1 + len(STEPS[probe])
        assert all(cell_statuses(bar) == ["PASS"] * BAR_RUNS for bar in bars)
        assert [r.attrs["data-step"] for r in card.all("tr")] == list(STEPS[probe])
    assert doc.all(cls="failure") == []
    assert share_of_colour(top, BANNER_GREEN) > 0.1
    assert share_of_colour(top, BANNER_RED) == 0.0


def test_seed_outage_page_in_chromium(tmp_path: Path) -> None:
    """The seed outage: a red incident banner naming the root cause in words with hint, action,
    affected probes and steps and since when; the failing cards show their failing step, bars with
    the failing runs at the right, and the upload message in full with its markup as text."""
    with open_store("sqlite", tmp_path) as store:
        fill_seed(store, NOW)
        with serve(store) as url:
            doc = dom(chromium(tmp_path, url, "--dump-dom"))
            top = screenshot(tmp_path, url, "seed")
    [banner] = [n for n in doc.all("section") if n.attrs.get("id") == "banner"]
    assert banner.attrs["data-incident"] == INCIDENT_ID
    assert banner.all("h2")[0].text() == "Incident open: Artifact storage not deployed"
    facts = dict(zip([d.text() for d in banner.all("dt")], [d.text() for d in banner.all("dd")], strict=True))
    assert (
        facts["Affected"]
        == "artifact_roundtrip (upload), alb_health (registry_health), registration (log_model)"
    )
    assert facts["Root cause"] == (
        "Artifact storage not deployed (artifact_route_not_deployed) at artifact_roundtrip / upload"
    )
    opened = NOW - timedelta(minutes=FAILING - 1)
    assert facts["Since"] == f"{opened:%Y-%m-%d %H:%M:%S} UTC ({FAILING - 1} min ago)"
    assert "artifact route not deployed" in facts["Hint"]
    assert facts["Action"].startswith("Check the proxy's route for /api/mlflow/api/2.0/mlflow-artifacts/*")
    assert doc.all(tag="script") == []

    by_probe = cards(doc)
    statuses = {p: c.attrs["data-status"] for p, c in by_probe.items()}
    assert statuses == {
        "auth": "PASS",
        "mlflow_api": "PASS",
        "alb_health": "FAIL",
        "artifact_roundtrip": "FAIL",
        "registration": "FAIL",
    }
    failing_steps = {p: [n.text() for n in c.all(cls="failing-step")] for p, c in by_probe.items()}
    assert failing_steps == {p: [SEED_FAILURES[p]] if p in SEED_FAILURES else [] for p in STEPS}

    art = by_probe["artifact_roundtrip"]
    run_bar, *step_bars = art.all("div", "bar")
    assert cell_statuses(run_bar) == ["PASS"] * (BAR_RUNS - FAILING) + ["FAIL"] * FAILING
    steps = dict(zip([r.attrs["data-step"] for r in art.all("tr")], step_bars, strict=True))
    assert cell_statuses(steps["upload"])[-FAILING:] == ["FAIL"] * FAILING
    assert cell_statuses(steps["delete"])[-FAILING:] == ["SKIPPED"] * FAILING
    newest = run_bar.all("span", "cell")[-1].attrs["title"]
    assert newest == "2025-07-22 11:59:00 UTC · FAIL · 0.02 s · failed at upload (404)"
    [message] = art.all("pre", "message")
    assert message.text() == UPLOAD_MESSAGE
    assert message.all() == []  # the <b> in the message is text, not an element
    assert "Cause: Artifact storage not deployed" in art.all(cls="failure")[0].text()
    assert "Cause: Load balancer has no healthy target" in by_probe["alb_health"].text()
    assert "uptime 24h 85.00%" in art.text()
    assert share_of_colour(top, BANNER_RED) > 0.1
    assert share_of_colour(top, BANNER_GREEN) == 0.0
