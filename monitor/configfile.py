"""Reading a config file: bytes -> text -> YAML tree -> plain data, ``${VAR}`` interpolation of
that data, and the one error type.

Whatever the file holds, this ends in plain data (with the line of every value, for messages) or
one :class:`ConfigError` on a single line: bytes that are not UTF-8, a file over
:data:`MAX_CONFIG_BYTES`, YAML that does not parse, aliases that expand past :data:`MAX_VALUES`
values ("billion laughs"), nesting past :data:`MAX_DEPTH`, a key written twice in one mapping (both
lines named). Validation into typed models is :mod:`monitor.config`'s job; interpolation is here so
that the store commands can interpolate their one section without importing every section's models.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic_core import PydanticCustomError

from probes.support.masking import SecretMasker

#: A config is a few KiB; a file past this is the wrong file (a log, a core dump, /dev/zero).
MAX_CONFIG_BYTES = 1024 * 1024
#: Values the document may expand to once YAML aliases are followed (a real config has hundreds).
MAX_VALUES = 100_000
#: Nesting depth of the document (a real config nests about six levels).
MAX_DEPTH = 64
#: Characters that would break "one line" or drive a terminal; shown escaped instead.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: ``$${`` (a literal ``${``), or ``${VAR}`` / ``${VAR:-default}`` (groups: the name, the default).
VAR = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

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
        # One line whatever the parts hold (a file name or a value with a newline or an escape).
        super().__init__(one_line(f"{prefix}: {message}" if prefix else message))

    def masked(self, masker: SecretMasker) -> ConfigError:
        """The same error with every secret ``masker`` knows replaced, in the reason and the path."""
        return ConfigError(
            masker.mask(self.reason), path=masker.mask(self.path), line=self.line, source=self.source
        )


def one_line(text: str) -> str:
    """``text`` on one line: line breaks become spaces, other control characters ``\\xNN``."""

    def escape(match: re.Match[str]) -> str:
        char = match.group(0)
        if char in "\r\n\t\x0b\x0c\x85\u2028\u2029":
            return " "
        return f"\\x{ord(char):02x}"

    return _UNPRINTABLE.sub(escape, text)


def format_path(loc: Path_) -> str:
    """``("probes", 2, "options", "url")`` -> ``probes[2].options.url``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_config_text(path: str | Path) -> str:
    """The text of the config file at ``path``: at most :data:`MAX_CONFIG_BYTES`, strict UTF-8."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            # One byte more than allowed tells "too large" without reading a runaway file whole.
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file: {exc.strerror or type(exc).__name__}", source=str(p)
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"the file is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a synthmon config", source=str(p)
        )
    return decode_config(raw, source=str(p))


def decode_config(raw: bytes, *, source: str = "") -> str:
    """``raw`` as UTF-8 text; a :class:`ConfigError` naming the line of the first bad byte otherwise."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.start + 1].hex()
        raise ConfigError(
            f"not UTF-8 text (byte 0x{bad} at offset {exc.start}); a config is a YAML text file",
            line=line,
            source=source,
        ) from None


def load_document(text: str, *, source: str = "") -> tuple[Any, dict[Path_, int]]:
    """The YAML ``text`` as plain data, and each field path's line.

    Refuses, as one :class:`ConfigError`, what ``yaml.safe_load`` would take or crash on: a key
    written twice in one mapping (PyYAML keeps the last silently), aliases that expand past
    :data:`MAX_VALUES` values or refer to themselves, nesting past :data:`MAX_DEPTH`.
    """
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as exc:  # the reader rejects control characters up front
        raise _yaml_error(exc, text, source) from None
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ConfigError(f"nested deeper than {MAX_DEPTH} levels", source=source) from None
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, text, source) from None
        if node is None:
            return None, {}
        _check_size(node, source)
        lines: dict[Path_, int] = {}
        _walk_lines(node, (), lines, source)
        try:
            data = loader.construct_document(node)
        except yaml.YAMLError as exc:
            raise _yaml_error(exc, text, source) from None
        return data, lines
    finally:
        loader.dispose()


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

        return VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: interpolate(v, env, (*path, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, (*path, i)) for i, v in enumerate(value)]
    return value


def _yaml_error(exc: yaml.YAMLError, text: str, source: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    line: int | None = mark.line + 1 if mark is not None else None
    if isinstance(exc, yaml.reader.ReaderError):
        # The reader names a character by position, not line (NUL bytes, escape sequences, ...).
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character
        code = char if isinstance(char, int) else ord(char[:1] or "\0")
        problem = f"character #x{code:04x} is not allowed in YAML"
    else:
        parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        problem = ", ".join(str(p) for p in parts if p) or str(exc)
    return ConfigError(f"invalid YAML: {' '.join(problem.split())}", line=line, source=source)


def _check_size(root: yaml.Node, source: str) -> None:
    """Refuse alias bombs, self-referencing aliases and deep nesting before anything expands them."""
    sizes: dict[int, int] = {}  # id(node) -> values it expands to (aliases share nodes)

    def size(node: yaml.Node, depth: int, on_path: set[int]) -> int:
        if depth > MAX_DEPTH:
            raise ConfigError(
                f"nested deeper than {MAX_DEPTH} levels", line=node.start_mark.line + 1, source=source
            )
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in on_path:
            raise ConfigError(
                "an alias refers to the value that contains it", line=node.start_mark.line + 1, source=source
            )
        total = 1
        if isinstance(node, yaml.SequenceNode | yaml.MappingNode):
            on_path.add(key)
            children: list[yaml.Node] = (
                list(node.value)
                if isinstance(node, yaml.SequenceNode)
                else [n for pair in node.value for n in pair]
            )
            for child in children:
                total += size(child, depth + 1, on_path)
                if total > MAX_VALUES:
                    raise ConfigError(
                        f"the document expands to more than {MAX_VALUES} values (YAML aliases?)",
                        line=node.start_mark.line + 1,
                        source=source,
                    )
            on_path.discard(key)
        sizes[key] = total
        return total

    size(root, 0, set())


def _walk_lines(node: yaml.Node, path: Path_, lines: dict[Path_, int], source: str) -> None:
    """Record the line of every field path and refuse a key written twice in one mapping."""
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[tuple[str, str], int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if isinstance(key_node, yaml.ScalarNode) and key_node.tag != "tag:yaml.org,2002:merge":
                # A merge key (<<: *defaults) may be overridden on purpose; a plain key twice is a slip.
                first = seen.get((key_node.tag, key))
                if first is not None:
                    raise ConfigError(
                        f"duplicate key {key!r} (first on line {first}, again on line {line}); "
                        "YAML would silently keep only the last",
                        path=format_path((*path, key)),
                        line=line,
                        source=source,
                    )
                seen[(key_node.tag, key)] = line
            lines[(*path, key)] = line
            _walk_lines(value_node, (*path, key), lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk_lines(item, (*path, i), lines, source)


def line_for(lines: Mapping[Path_, int], path: Path_) -> int | None:
    # The deepest prefix that exists in the file: a missing field points at its parent.
    for end in range(len(path), -1, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return None


def path_error(path: Path_, message: str) -> PydanticCustomError:
    """A validation error that names ``path`` (not the model it was raised in) and ``message``."""
    # Cross-field checks run in a model validator, whose own location is the model; the path of
    # the offending field travels in the error context so the converter can name it and its line.
    return PydanticCustomError("config_path", "{message}", {"message": message, "path": list(path)})
