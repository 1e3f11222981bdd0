"""The stored form of a run's detail (``runs.detail``): its steps as compact JSON, zlib-compressed.

Why this shape: a run used to be stored as its full JSON (2.3 KB on average, every field of every
step written out even when empty, floats at full precision, the run's own columns repeated). Most of
that is either already in the row (probe, kind, run id, environment, start, duration, status), derived
(the "N/M passed" checks) or a default. So the blob holds only the steps, each without its empty
fields, with times rounded to 0.1 ms, compressed with a preset dictionary of the keys and values
every run repeats (zlib's ``zdict``: a small payload compresses well only when the compressor
already knows its vocabulary). A typical run takes about a tenth of its old JSON.

The first byte is the format, so the dictionary can change without rewriting old rows: a new
dictionary is a new format byte, and every format ever written stays decodable here. This module
works on plain dicts (the shapes of ``StepResult.to_dict``), so the store layer and its migrations
can use it without importing any feature.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

#: Format 1: zlib (raw deflate stream with header) over compact JSON, with :data:`_ZDICT_V1`.
FORMAT_V1 = 1

#: Seconds are kept to 0.1 ms: finer than any network timing means, coarser than float noise.
TIME_DECIMALS = 4

#: Step fields that are times in seconds (rounded to :data:`TIME_DECIMALS`).
_TIME_KEYS = frozenset({"duration_s", "connect_s", "tls_s", "ttfb_s", "total_s"})

# What deflate may refer back to before the first byte of a payload. Later bytes are cheaper to
# reference, so the most frequent strings come last. FROZEN: rows written with it must stay readable;
# a different dictionary needs a new format byte.
_ZDICT_V1 = (
    b'"diagnosis":{"cause":"","hint":"","action":"","title":""},"measurements":{'
    b'"cert_expiry_timestamp_seconds":,"cert_days_left":,"upload_bytes_per_second":},'
    b'"error_class":"timeout","error_class":"connect_error","error_class":"body_mismatch",'
    b'"error_class":"http_status","body_excerpt":"{\\"detail\\":\\"Not Found\\"}",'
    b'"http_status":404,"http_status":503,"status":"ERROR","status":"FAIL","status":"DEGRADED",'
    b'answered 404, expected 200","tls_s":0.0'
    b'{"name":"set_experiment","train","log_model","register","wait_ready","load","predict","cleanup",'
    b'"upload","list","download","verify","delete","experiments_search","registered_models_search",'
    b'"experiment","client_search","auth_health","auth_root","auth_validate","registry_health",'
    b'"registry_api_health","mlflow_ui","mlflow_api_proxy","isolation_registry_has_no_auth_api",'
    b'"isolation_auth_has_no_mlflow","mlflow_client","summary","health","ready","validate",'
    b'"rejects_invalid_key","status":"SKIPPED","message":"skipped:  failed"},'
    b'"path":"/api/mlflow/api/2.0/mlflow/experiments/search","/api/2.0/mlflow/registered-models/search",'
    b'"message":"POST /api/mlflow/api/2.0/mlflow-artifacts/artifacts/synthmon/","content_type":"text/html",'
    b' bytes, SHA-256 match","content_type":"text/plain; charset=utf-8",'
    b'{"name":"","status":"PASS","duration_s":0.0,"http_status":200,"message":"GET / answered 200",'
    b'"path":"/","content_type":"application/json","timing":{"connect_s":0.00,"ttfb_s":0.0,"total_s":0.'
)


#: Types whose values are kept as they are (the general path below handles everything else).
_PLAIN = frozenset({str, int, float, bool})


def _compact(value: Any) -> Any:
    """``value`` without None, empty strings and empty containers, times rounded (recursively)."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if type(item) in _PLAIN:
                if item == "":
                    continue
            else:
                item = _compact(item)
                if item is None or item == "" or item == {} or item == []:
                    continue
            if key in _TIME_KEYS and isinstance(item, float):
                item = round(item, TIME_DECIMALS)
            out[key] = item
        return out
    if isinstance(value, list | tuple):
        return [_compact(v) for v in value]
    return value


def pack_steps(steps: Sequence[Mapping[str, Any]]) -> bytes:
    """The stored bytes of a run's steps (dicts in ``StepResult.to_dict`` shape)."""
    text = json.dumps([_compact(s) for s in steps], separators=(",", ":"), ensure_ascii=False)
    deflate = zlib.compressobj(9, zlib.DEFLATED, 15, 9, zlib.Z_DEFAULT_STRATEGY, _ZDICT_V1)
    return bytes([FORMAT_V1]) + deflate.compress(text.encode()) + deflate.flush()


def unpack_steps(blob: bytes) -> list[dict[str, Any]]:
    """The steps stored by :func:`pack_steps` (any format it ever wrote). Fields left out because
    they were empty come back missing; ``StepResult.from_dict`` reads missing fields as empty."""
    data = bytes(blob)  # PostgreSQL's driver hands back a memoryview
    if not data or data[0] != FORMAT_V1:
        raise ValueError(f"unknown stored run format {data[:1]!r}")
    inflate = zlib.decompressobj(15, _ZDICT_V1)
    steps: list[dict[str, Any]] = json.loads(inflate.decompress(data[1:]) + inflate.flush())
    return steps


def run_dict(columns: Mapping[str, Any], steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A run in ``ProbeResult.to_dict`` shape (without the derived checks) from its row's columns
    (``probe``, ``kind``, ``run_id``, ``environment``, ``started_at`` as ISO text, ``duration_s``,
    ``status``) and its unpacked steps."""
    return {**columns, "steps": list(steps)}
