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
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
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
from pydantic_core import PydanticCustomError

from monitor.alerting.config import AlertingConfig
from monitor.diagnosis import Signature
from monitor.store.config import StoreConfig
from probes import PROBE_KINDS
from probes.base import Duration, PositiveDuration, ProbeOptions

DEFAULT_LISTEN = "0.0.0.0:9710"
#: The shortest probe interval: below it a probe becomes load on the platform, not a check of it.
MIN_INTERVAL_S = 1.0
#: Signature fields that say what a row diagnoses; every other set field is a condition.
_SIGNATURE_OUTPUT = frozenset({"cause", "hint", "action", "title"})
_VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_NAME = r"^[a-z0-9_]+$"
_INTERNAL_LOC = re.compile(r"^[a-z-]+\[.*\]$")

Path_ = tuple[str | int, ...]


class ConfigError(Exception):
    """A config that cannot be used: one message naming the field path and the file line."""

    def __init__(self, message: str, *, path: str = "", line: int | None = None, source: str = "") -> None:
        self.reason = message
        self.path = path
        self.line = line
        self.source = source
        where = source + (f":{line}" if line is not None and source else "")
        prefix = ": ".join(p for p in (where, path) if p)
        super().__init__(f"{prefix}: {message}" if prefix else message)


def format_path(loc: Path_) -> str:
    """``("probes", 2, "options", "url")`` -> ``probes[2].options.url``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (``[::1]:9710`` for IPv6) -> ``(host, port)``; ValueError when malformed."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen must be host:port (e.g. {DEFAULT_LISTEN}), got {value!r}")
    return host.strip("[]"), int(port)


def _path_error(path: Path_, message: str) -> PydanticCustomError:
    # Cross-field checks run in a model validator, whose own location is the model; the path of
    # the offending field travels in the error context so the converter can name it and its line.
    return PydanticCustomError("config_path", "{message}", {"message": message, "path": list(path)})


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
        if self.timeout > self.interval and not self.allow_timeout_over_interval:
            raise _path_error(
                ("timeout",),
                f"timeout {self.timeout:g}s is longer than interval {self.interval:g}s; runs would be "
                "skipped while one is in flight (set allow_timeout_over_interval: true if intended)",
            )
        if self.jitter >= self.interval:
            raise _path_error(
                ("jitter",), f"jitter {self.jitter:g}s must be shorter than interval {self.interval:g}s"
            )
        if self.latency_budget is not None and self.latency_budget >= self.timeout:
            raise _path_error(
                ("latency_budget",),
                f"latency_budget {self.latency_budget:g}s must be shorter than timeout {self.timeout:g}s",
            )
        return self


class Config(BaseModel):
    """The whole daemon configuration (immutable; a reload builds a new one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    environment: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    listen: str = DEFAULT_LISTEN
    store: StoreConfig = Field(default_factory=StoreConfig)
    alerting: AlertingConfig = Field(default_factory=AlertingConfig)
    secrets: dict[str, SecretStr] = Field(default_factory=dict)
    diagnosis: list[Signature] = Field(default_factory=list)
    probes: list[ProbeConfig] = Field(default_factory=list)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("secrets", mode="before")
    @classmethod
    def _secret_files(cls, value: Any) -> Any:
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
                raise _path_error((key,), f"secret {name!r} is given both inline and as a file")
            try:
                out[name] = Path(str(raw)).read_text(encoding="utf-8").strip()
            except OSError as exc:
                # strerror only: the exception text never contains file content.
                raise _path_error((key,), f"cannot read {raw}: {exc.strerror}") from None
        for name in out:
            if not re.match(_NAME, name):
                raise _path_error((name,), "secret names are lowercase letters, digits and _")
        return out

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Config:
        # parse_config passes where each secret came from (before interpolation erased it).
        sources: Mapping[str, tuple[str, str]] = (info.context or {}).get("secret_sources", {})
        names: dict[str, int] = {}
        for i, probe in enumerate(self.probes):
            if probe.name in names:
                raise _path_error(
                    ("probes", i, "name"),
                    f"duplicate probe name {probe.name!r} (also probes[{names[probe.name]}])",
                )
            names[probe.name] = i
        for i, probe in enumerate(self.probes):
            for j, dep in enumerate(probe.depends_on):
                if dep not in names:
                    raise _path_error(("probes", i, "depends_on", j), f"unknown probe {dep!r}")
                if dep == probe.name:
                    raise _path_error(("probes", i, "depends_on", j), "a probe cannot depend on itself")
            secret_names = getattr(probe.options, "secret_names", None)
            if callable(secret_names):
                for secret in sorted(secret_names()):
                    if secret not in self.secrets:
                        raise _path_error(
                            ("probes", i, "options"),
                            f"uses secret {secret!r}, which is not defined under secrets:",
                        )
                    if not self.secrets[secret].get_secret_value().strip():
                        # Secrets.get refuses an empty value at run time: every run would be an
                        # ERROR, which does not page. Refuse the config instead, naming the source.
                        key, origin = sources.get(secret, (secret, ""))
                        raise _path_error(
                            ("secrets", key),
                            f"is empty{f' (from {origin})' if origin else ''}, "
                            f"but probes[{i}] ({probe.name}) uses it",
                        )
        cycle = _find_cycle({p.name: list(p.depends_on) for p in self.probes})
        if cycle:
            raise _path_error(
                ("probes", names[cycle[0]], "depends_on"), "dependency cycle: " + " -> ".join(cycle)
            )
        self._check_alerting_probes(names)
        for i, signature in enumerate(self.diagnosis):
            if not set(signature.model_dump(exclude_none=True)) - _SIGNATURE_OUTPUT:
                # A row without conditions matches every failing step and hides the built-in table.
                raise _path_error(
                    ("diagnosis", i),
                    "a diagnosis row needs at least one condition (http_status, path_regex, "
                    "body_regex, error_class, probe, step, ...); this one would match every failure",
                )
        return self

    def _check_alerting_probes(self, names: Mapping[str, int]) -> None:
        """Probe names referenced from ``alerting:`` must exist (a typo would silently never apply)."""
        known = ", ".join(names) or "(none)"
        for probe in self.alerting.probes:
            if probe not in names:
                raise _path_error(
                    ("alerting", "probes", probe), f"unknown probe {probe!r}; configured: {known}"
                )
        for i, window in enumerate(self.alerting.maintenance):
            for j, probe in enumerate(window.probes):
                if probe not in names:
                    raise _path_error(
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


# --- YAML with line numbers -------------------------------------------------------------------


def _line_map(text: str) -> dict[Path_, int]:
    """Field path -> 1-based line of its value (or key) in the YAML ``text``."""
    lines: dict[Path_, int] = {}
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines

    def walk(node: yaml.Node, path: Path_) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                key = str(key_node.value)
                lines[(*path, key)] = key_node.start_mark.line + 1
                walk(value_node, (*path, key))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*path, i))

    if root is not None:
        walk(root, ())
    return lines


def _line_for(lines: Mapping[Path_, int], path: Path_) -> int | None:
    # The deepest prefix that exists in the file: a missing field points at its parent.
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def interpolate(value: Any, env: Mapping[str, str], path: Path_ = ()) -> Any:
    """``value`` with ``${VAR}`` / ``${VAR:-default}`` replaced in every string, recursively."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$${":
                return "${"
            var, default = match.group(1), match.group(2)
            got = env.get(var)
            if default is not None:
                return got if got else default
            if got is None:
                raise ConfigError(
                    f"environment variable {var} is not set (write ${{{var}:-default}} to give a default)",
                    path=format_path(path),
                )
            return got

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, (*path, i)) for i, v in enumerate(value)]
    return value


def parse_config(text: str, *, source: str = "", env: Mapping[str, str] | None = None) -> Config:
    """Validate YAML ``text``; raises :class:`ConfigError` naming ``source``, line and field path."""
    lines = _line_map(text)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML: {problem}", line=line, source=source) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping (environment:, probes:, ...)", source=source)
    raw = data
    try:
        data = interpolate(data, os.environ if env is None else env)
    except ConfigError as exc:
        loc = tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", exc.path))
        raise ConfigError(exc.reason, path=exc.path, line=_line_for(lines, loc), source=source) from None
    try:
        return Config.model_validate(data, context={"secret_sources": _secret_sources(raw)})
    except ValidationError as exc:
        raise _to_config_error(exc, lines, source) from None


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
            names = [m.group(1) for m in _VAR.finditer(value) if m.group(1)]
            out[key] = (key, "environment variable " + " and ".join(names) if names else "")
    return out


def _to_config_error(exc: ValidationError, lines: Mapping[Path_, int], source: str) -> ConfigError:
    """The first (most specific) pydantic error as one readable :class:`ConfigError`."""
    err = exc.errors(include_url=False, include_input=False)[0]
    loc: Path_ = tuple(err["loc"])
    ctx = err.get("ctx") or {}
    message = str(err["msg"])
    if err["type"] == "config_path":
        # A validator's error sits at its model's (or field's) location; ctx carries the rest.
        loc = (*loc, *ctx["path"])
        message = str(ctx["message"])
    elif err["type"] == "extra_forbidden":
        message = f"unknown key {loc[-1]!r}"
    elif err["type"] == "missing":
        message = "required field is missing"
    elif message.startswith("Value error, "):
        message = message.removeprefix("Value error, ")
    # Validator segments such as "function-after[_timing(), ProbeConfig]" are pydantic internals,
    # not keys the user wrote (keys like "X-API-Key" stay).
    loc = tuple(p for p in loc if not (isinstance(p, str) and _INTERNAL_LOC.match(p)))
    return ConfigError(message, path=format_path(loc), line=_line_for(lines, loc), source=source)


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> Config:
    """Read and validate the config file at ``path``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file: {exc.strerror}", source=str(p)) from None
    return parse_config(text, source=str(p), env=env)
