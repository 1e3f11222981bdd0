"""Typed, strict, frozen configuration: YAML -> ``${VAR}`` interpolation -> pydantic models.

Loading happens once (and again on SIGHUP). Every problem becomes one :class:`ConfigError` whose
message names the field path as users write it (``probes[2].options.url``) and, when it can be
known, the line in the YAML file, so ``synthmon check-config`` can say exactly what to fix.

Interpolation rules (applied to string values after YAML parsing, so values can hold any text):

- ``${VAR}``            the environment variable VAR; unset is an error naming VAR and the field;
- ``${VAR:-default}``   VAR when set and non-empty, else ``default``;
- ``$${``               a literal ``${``.

Secrets: ``secrets: {api_key: ${SYNTHMON_API_KEY}}`` or ``secrets: {api_key_file: /run/secrets/k}``
(the file's content, stripped, becomes secret ``api_key``). They are :class:`SecretStr`: printed
as ``**********`` and collected by :meth:`Config.secret_values` for the log masker.

Whatever the file holds, loading ends in a valid :class:`Config` or one :class:`ConfigError` whose
text is a single line: bytes that are not UTF-8, a file over :data:`MAX_CONFIG_BYTES`, YAML that
does not parse, aliases that expand past :data:`MAX_VALUES` values ("billion laughs"), nesting past
:data:`MAX_DEPTH`, a key written twice in one mapping (both lines named). Every secret the file
configures is masked in the message, whichever field it landed in, and an unknown key comes with a
"did you mean" naming the closest known field.

Reading the file (bytes to plain data, interpolation, :class:`ConfigError`) is
:mod:`monitor.configfile`; the ``web:`` section's models are :mod:`monitor.webconfig`. This module
is long because the models and
the messages about them belong together: masking every secret of a config that did not validate
and suggesting a known key both walk the models' own types.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin
from urllib.parse import unquote, urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.alerting.config import AlertingConfig
from monitor.baselines.config import BaselinesConfig
from monitor.configfile import (
    VAR,
    ConfigError,
    Path_,
    format_path,
    interpolate,
    line_for,
    load_document,
    path_error,
    read_config_text,
)
from monitor.diagnosis import Signature, check_signatures
from monitor.location import LOCATION_MAX, LOCATION_PATTERN
from monitor.slo.config import SloConfig, check_slos
from monitor.store.config import StoreConfig
from monitor.webconfig import WebConfig
from probes.base import Duration, PositiveDuration, ProbeOptions
from probes.registry import PROBE_KINDS
from probes.support.masking import SecretMasker

DEFAULT_LISTEN = "0.0.0.0:9710"
#: The shortest probe interval: below it a probe becomes load on the platform, not a check of it.
MIN_INTERVAL_S = 1.0
_NAME = r"^[a-z0-9_]+$"
_INTERNAL_LOC = re.compile(r"^[a-z-]+\[.*\]$")
#: The longest interval, timeout, jitter or latency budget of a probe (the scheduler's timers and
#: a week-long run are both nonsense past this).
MAX_DURATION_S = 7 * 86400.0


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (``[::1]:9710`` for IPv6) -> ``(host, port)``; ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    # A host with blanks or control characters (a stray newline from an env file) never binds.
    odd_host = any(c.isspace() or not c.isprintable() for c in host)
    if (
        not sep
        or not host
        or odd_host
        or not port.isascii()
        or not port.isdigit()
        or not 0 <= int(port) <= 65535
    ):
        raise ValueError(f"listen must be host:port (e.g. {DEFAULT_LISTEN}), got {value!r}")
    return host.strip("[]"), int(port)


class ProbeConfig(BaseModel):
    """One scheduled probe: what kind, how often, how long it may take, and its options."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME, max_length=64)
    kind: str
    enabled: bool = True
    interval: PositiveDuration = 60.0
    timeout: PositiveDuration = 30.0
    #: Each run starts up to this many seconds late (random), so probes sharing an interval
    #: do not hit the platform in the same second.
    jitter: Duration = 0.0
    #: A PASS run taking longer than this is reported DEGRADED.
    latency_budget: PositiveDuration | None = None
    depends_on: list[str] = Field(default_factory=list)
    #: Without this, a timeout longer than the interval is rejected (runs would be skipped).
    allow_timeout_over_interval: bool = False
    options: SerializeAsAny[ProbeOptions] = Field(default_factory=ProbeOptions, validate_default=True)

    @field_validator("interval")
    @classmethod
    def _min_interval(cls, interval: float) -> float:
        if interval < MIN_INTERVAL_S:
            raise ValueError(f"interval must be at least {MIN_INTERVAL_S:g}s, got {interval:g}s")
        return interval

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        if kind not in PROBE_KINDS:
            known = ", ".join(sorted(PROBE_KINDS)) or "(none registered)"
            raise ValueError(f"unknown probe kind {kind!r}; known kinds: {known}")
        return kind

    @field_validator("options", mode="before")
    @classmethod
    def _typed_options(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind is None:
            # The kind itself is invalid and already reported; do not pile a second error on it.
            return ProbeOptions()
        options_cls = PROBE_KINDS[kind].Options
        if isinstance(value, options_cls):
            return value
        if isinstance(value, ProbeOptions):  # the empty default: validate it as this kind's options
            value = value.model_dump()
        # A nested ValidationError keeps its locations, so the user sees probes[i].options.url.
        return options_cls.model_validate(value if value is not None else {})

    @model_validator(mode="after")
    def _timing(self) -> ProbeConfig:
        for field in ("interval", "timeout", "jitter", "latency_budget"):
            value = getattr(self, field)
            if value is not None and value > MAX_DURATION_S:
                raise path_error((field,), f"{field} {value:g}s is longer than the maximum of 7d")
        if self.timeout > self.interval and not self.allow_timeout_over_interval:
            raise path_error(
                ("timeout",),
                f"timeout {self.timeout:g}s is longer than interval {self.interval:g}s; runs would be "
                "skipped while one is in flight (set allow_timeout_over_interval: true if intended)",
            )
        if self.jitter >= self.interval:
            raise path_error(
                ("jitter",), f"jitter {self.jitter:g}s must be shorter than interval {self.interval:g}s"
            )
        if self.latency_budget is not None and self.latency_budget >= self.timeout:
            raise path_error(
                ("latency_budget",),
                f"latency_budget {self.latency_budget:g}s must be shorter than timeout {self.timeout:g}s",
            )
        return self


class Config(BaseModel):
    """The whole daemon configuration (immutable; a reload builds a new one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    #: Where this daemon probes from; None: found at start-up (monitor.location).
    location: str | None = Field(
        default=None, min_length=1, max_length=LOCATION_MAX, pattern=LOCATION_PATTERN
    )
    listen: str = DEFAULT_LISTEN
    web: WebConfig = Field(default_factory=WebConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    baselines: BaselinesConfig = Field(default_factory=BaselinesConfig)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    diagnosis: list[Signature] = Field(default_factory=list)
    probes: list[ProbeConfig] = Field(default_factory=list)
    slos: list[SloConfig] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_files(cls, value: Any, info: ValidationInfo) -> Any:
        if not isinstance(value, Mapping):
            return value
        out: dict[str, Any] = {}
        for key, raw in value.items():
            key = str(key)
            if not key.endswith("_file"):
                out[key] = raw
                continue
            name = key.removesuffix("_file")
            if name in value:
                raise path_error((key,), f"secret {name!r} is given both inline and as a file")
            try:
                out[name] = Path(str(raw)).read_text(encoding="utf-8").strip()
            except OSError as exc:
                # strerror only: the exception text never contains file content.
                raise path_error((key,), f"cannot read {raw}: {exc.strerror}") from None
            except UnicodeDecodeError:
                raise path_error((key,), f"{raw} is not UTF-8 text") from None
            if isinstance(info.context, dict):
                # parse_config masks it in any later message (the value is known only from here).
                info.context.setdefault("secret_values", []).append(out[name])
        for name in out:
            if not re.match(_NAME, name):
                raise path_error((name,), "secret names are lowercase letters, digits and _")
        return out

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Config:
        # parse_config passes where each secret came from (before interpolation erased it).
        sources: Mapping[str, tuple[str, str]] = (info.context or {}).get("secret_sources", {})
        names: dict[str, int] = {}
        for i, probe in enumerate(self.probes):
            if probe.name in names:
                raise path_error(
                    ("probes", i, "name"),
                    f"duplicate probe name {probe.name!r} (also probes[{names[probe.name]}])",
                )
            names[probe.name] = i
        for i, probe in enumerate(self.probes):
            for j, dep in enumerate(probe.depends_on):
                if dep not in names:
                    raise path_error(("probes", i, "depends_on", j), f"unknown probe {dep!r}")
                if dep == probe.name:
                    raise path_error(("probes", i, "depends_on", j), "a probe cannot depend on itself")
            secret_names = getattr(probe.options, "secret_names", None)
            if callable(secret_names):
                for secret in sorted(secret_names()):
                    if secret not in self.secrets:
                        raise path_error(
                            ("probes", i, "options"),
                            f"uses secret {secret!r}, which is not defined under secrets:",
                        )
                    if not self.secrets[secret].get_secret_value().strip():
                        # Secrets.get refuses an empty value at run time: every run would be an
                        # ERROR, which does not page. Refuse the config instead, naming the source.
                        key, origin = sources.get(secret, (secret, ""))
                        raise path_error(
                            ("secrets", key),
                            f"is empty{f' (from {origin})' if origin else ''}, "
                            f"but probes[{i}] ({probe.name}) uses it",
                        )
        cycle = _find_cycle({p.name: list(p.depends_on) for p in self.probes})
        if cycle:
            raise path_error(
                ("probes", names[cycle[0]], "depends_on"), "dependency cycle: " + " -> ".join(cycle)
            )
        steps = {p.name: p.options.step_names() for p in self.probes}
        slo_error = check_slos(self.slos, list(names), retention_days=self.store.retention_days, steps=steps)
        if slo_error is not None:
            raise slo_error
        self._check_alerting_probes([*names, *(slo.pseudo_probe for slo in self.slos)])
        row_error = check_signatures(self.diagnosis, steps)
        if row_error is not None:
            raise row_error
        return self

    def _check_alerting_probes(self, names: Sequence[str]) -> None:
        """Probe names referenced from ``alerting:`` must exist (a typo would silently never apply).

        An SLO's burn incidents are those of its pseudo-probe ``slo:<name>``, which takes overrides
        and maintenance windows like any probe."""
        known = ", ".join(names) or "(none)"
        for probe in self.alerting.probes:
            if probe not in names:
                raise path_error(
                    ("alerting", "probes", probe), f"unknown probe {probe!r}; configured: {known}"
                )
        for i, window in enumerate(self.alerting.maintenance):
            for j, probe in enumerate(window.probes):
                if probe not in names:
                    raise path_error(
                        ("alerting", "maintenance", i, "probes", j),
                        f"unknown probe {probe!r}; configured: {known}",
                    )

    def probe(self, name: str) -> ProbeConfig:
        """The probe called ``name``; KeyError when there is none."""
        for probe in self.probes:
            if probe.name == name:
                return probe
        raise KeyError(name)

    def secret_values(self) -> list[str]:
        """Every configured secret value anywhere in the config (for maskers). Never log it."""
        # The store URL is a plain string (sqlalchemy needs it whole), so its password is added here.
        values = {*_walk_secrets(self), *self.store.passwords()}
        return sorted({v for v in values if v}, key=len, reverse=True)

    def secret_map(self) -> dict[str, str]:
        """The ``secrets:`` table as plain values (for a probe's :class:`probes.base.Secrets`)."""
        return {k: v.get_secret_value() for k, v in self.secrets.items()}

    def listen_address(self) -> tuple[str, int]:
        """``listen`` as ``(host, port)``."""
        return parse_listen(self.listen)

    def effective(self) -> dict[str, Any]:
        """The config as plain data with every secret shown as ``**********`` (for check-config)."""
        data = self.model_dump(mode="json")
        data["store"]["url"] = self.store.safe_url()
        return data


def _walk_secrets(value: Any) -> Iterator[str]:
    if isinstance(value, SecretStr):
        yield value.get_secret_value()
    elif isinstance(value, BaseModel):
        for field_name in type(value).model_fields:
            yield from _walk_secrets(getattr(value, field_name))
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _walk_secrets(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            yield from _walk_secrets(item)


def _find_cycle(graph: Mapping[str, list[str]]) -> list[str] | None:
    """A dependency cycle as ``[a, b, a]``, or None (iterative DFS, deterministic order)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for root in graph:
        if state.get(root):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(graph.get(root, [])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(child) == 1:
                return [*path[path.index(child) :], child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(graph.get(child, []))))
    return None


def _non_finite(value: Any, path: Path_ = ()) -> Path_ | None:
    """The path of the first ``.inf`` / ``.nan`` in ``value``: no field of a config means either."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items: Any = ((str(k), v) for k, v in value.items())
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _non_finite(item, (*path, key))
        if found is not None:
            return found
    return None


def parse_config(text: str, *, source: str = "", env: Mapping[str, str] | None = None) -> Config:
    """Validate YAML ``text``; raises :class:`ConfigError` naming ``source``, line and field path."""
    raw, lines = load_document(text, source=source)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping (environment:, probes:, ...)", source=source)
    try:
        data = interpolate(raw, os.environ if env is None else env)
    except ConfigError as exc:
        loc = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", exc.path))
        raise ConfigError(exc.reason, path=exc.path, line=line_for(lines, loc), source=source) from None
    # Secret files read during validation add their contents here, so a message can mask them too.
    context: dict[str, Any] = {"secret_sources": _secret_sources(raw), "secret_values": []}
    try:
        bad = _non_finite(data)
        if bad is not None:
            raise ConfigError(
                "must be a finite number (.inf and .nan mean nothing here)",
                path=format_path(bad),
                line=line_for(lines, bad),
                source=source,
            )
        try:
            return Config.model_validate(data, context=context)
        except ValidationError as exc:
            raise _to_config_error(exc, lines, source, data) from None
        except (TypeError, AttributeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
            # A validator that assumed a type ahead of pydantic's check (a list where a duration
            # string goes). Its text is all we know; still one line and exit 2, not a traceback.
            raise ConfigError(
                f"a value has the wrong type ({type(exc).__name__}: {exc})", source=source
            ) from None
    except ConfigError as exc:
        # Whatever field a secret landed in (listen: ${SYNTHMON_API_KEY}), the message masks it.
        masker = SecretMasker(_masking_variants([*_configured_secrets(data), *context["secret_values"]]))
        raise exc.masked(masker) from None


def _secret_sources(raw: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Secret name -> (the key written under ``secrets:``, where its value comes from).

    Read from the YAML before interpolation, so an empty secret can be reported as "from
    SYNTHMON_API_KEY" or "from file /run/secrets/k" instead of leaving the user to guess.
    """
    secrets = raw.get("secrets")
    out: dict[str, tuple[str, str]] = {}
    if not isinstance(secrets, Mapping):
        return out
    for key, value in secrets.items():
        key = str(key)
        if key.endswith("_file"):
            out[key.removesuffix("_file")] = (key, f"file {value}")
        elif isinstance(value, str):
            names = [m.group(1) for m in VAR.finditer(value) if m.group(1)]
            out[key] = (key, "environment variable " + " and ".join(names) if names else "")
    return out


# --- secrets of a config that did not validate -----------------------------------------------


def _configured_secrets(data: Mapping[str, Any]) -> list[str]:
    """Every value the (interpolated, unvalidated) ``data`` puts in a secret field.

    Found by the models' own types (every :class:`SecretStr` field, ``secrets:`` included), plus
    the store URL's password, so a new secret field is covered without being listed here.
    """
    found: list[str] = []
    secrets = data.get("secrets")
    if isinstance(secrets, Mapping):
        # ``api_key_file: /run/secrets/k`` is a path, not the secret (its content is collected
        # while validating); masking it would hide which file could not be read.
        data = {**data, "secrets": {k: v for k, v in secrets.items() if not str(k).endswith("_file")}}
    _collect_secrets(Config, data, found)
    store = data.get("store")
    url = store.get("url") if isinstance(store, Mapping) else None
    if isinstance(url, str):
        try:
            password = urlsplit(url).password
        except ValueError:  # an unparseable URL: its error message does not repeat it
            password = None
        if password:
            found += [password, unquote(password)]
    return found


def _collect_secrets(tp: Any, value: Any, found: list[str]) -> None:
    arms = _arms(tp)
    if isinstance(value, str):
        if SecretStr in arms:
            found.append(value)
        return
    for arm in arms:
        origin = get_origin(arm)
        if isinstance(value, Mapping) and isinstance(arm, type) and issubclass(arm, BaseModel):
            for name, item in value.items():
                field_tp = _field_type(arm, str(name), value)
                if field_tp is not None:
                    _collect_secrets(field_tp, item, found)
        elif isinstance(value, Mapping) and origin in (dict, Mapping):
            args = get_args(arm)
            for item in value.values():
                _collect_secrets(args[1] if len(args) == 2 else Any, item, found)
        elif isinstance(value, list) and origin in (list, tuple, Sequence):
            args = get_args(arm)
            for item in value:
                _collect_secrets(args[0] if args else Any, item, found)


def _masking_variants(secrets: Sequence[str]) -> list[str]:
    """Each secret as written and as a message may quote it (``repr`` and JSON escape quotes)."""
    out: set[str] = set()
    for secret in secrets:
        forms = [secret, secret.strip()]
        try:
            url = urlsplit(secret.strip())
        except ValueError:
            url = None
        if url is not None and url.scheme and url.netloc:
            # A webhook URL's credential is its path: a message showing only the path leaks it too.
            forms += [p for p in (url.path.strip("/"), url.query) if len(p) >= 8]
        for form in forms:
            out.update(v for v in (form, repr(form)[1:-1], json.dumps(form)[1:-1]) if v)
    return sorted(out, key=len, reverse=True)


# --- the models' shape, for secrets and "did you mean" ----------------------------------------


def _arms(tp: Any) -> list[Any]:
    """The alternatives of a field type: ``Annotated`` and ``X | None`` unwrapped."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _arms(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [arm for arg in get_args(tp) for arm in _arms(arg)]
    return [tp]


def _field_type(model: type[BaseModel], name: str, data: Mapping[str, Any]) -> Any:
    """The annotation of ``model``'s field ``name`` (or alias); a probe's options by its kind."""
    if model is ProbeConfig and name == "options":
        kind = data.get("kind")
        return PROBE_KINDS[kind].Options if isinstance(kind, str) and kind in PROBE_KINDS else None
    for field_name, field in model.model_fields.items():
        if name in (field_name, field.alias):
            return field.annotation
    return None


def _known_keys(loc: Path_, data: Any) -> list[str]:
    """The keys the mapping at ``loc`` may hold (empty when it is not a model's)."""
    tp: Any = Config
    node = data
    for part in loc:
        next_tp: Any = None
        for arm in _arms(tp):
            origin = get_origin(arm)
            if isinstance(part, int) and origin in (list, tuple, Sequence):
                next_tp = get_args(arm)[0] if get_args(arm) else None
            elif isinstance(part, str) and isinstance(arm, type) and issubclass(arm, BaseModel):
                next_tp = _field_type(arm, part, node if isinstance(node, Mapping) else {})
            elif isinstance(part, str) and origin in (dict, Mapping) and len(get_args(arm)) == 2:
                next_tp = get_args(arm)[1]
            if next_tp is not None:
                break
        if next_tp is None:
            return []
        tp = next_tp
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            node = None
    keys: list[str] = []
    for arm in _arms(tp):
        if isinstance(arm, type) and issubclass(arm, BaseModel):
            keys += [field.alias or name for name, field in arm.model_fields.items()]
    return keys


def _unknown_key_message(loc: Path_, data: Any) -> str:
    key = str(loc[-1])
    known = _known_keys(loc[:-1], data)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {format_path((*loc[:-1], close[0]))}?"
    if known:
        return f"unknown key {key!r}; known keys here: {', '.join(known)}"
    return f"unknown key {key!r}"


def _to_config_error(exc: ValidationError, lines: Mapping[Path_, int], source: str, data: Any) -> ConfigError:
    """The first (most specific) pydantic error as one readable :class:`ConfigError`."""
    err = exc.errors(include_url=False, include_input=False)[0]
    loc: Path_ = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    message = str(err["msg"])
    if err["type"] == "config_path":
        # A validator's error sits at its model's (or field's) location; ctx carries the rest.
        loc = (*loc, *ctx["path"])
        message = str(ctx["message"])
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    # Validator segments such as "function-after[_timing(), ProbeConfig]" are pydantic internals,
    # not keys the user wrote (keys like "X-API-Key" stay).
    loc = tuple(p for p in loc if not (isinstance(p, str) and _INTERNAL_LOC.match(p)))
    if err["type"] == "extra_forbidden":
        message = _unknown_key_message(loc, data)
    elif err["type"] == "missing":
        message = "required field is missing"
    return ConfigError(message, path=format_path(loc), line=line_for(lines, loc), source=source)


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path``."""
    return parse_config(read_config_text(path), source=str(Path(path)), env=env)
