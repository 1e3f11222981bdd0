"""A small Dockerfile reader for the deploy tests: instructions by stage, and .dockerignore matching.

Docker itself cannot run on the test machines (no engine), so the tests read the Dockerfile the
way the builder does -- continuation lines joined, comments dropped, ``ARG`` defaults substituted
into ``FROM`` -- and replay the parts that can run without an engine.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@dataclass(frozen=True)
class Instruction:
    """One instruction: the stage it belongs to (``""`` before the first FROM), keyword, arguments."""

    stage: str
    keyword: str
    args: str

    def exec_form(self) -> list[str] | None:
        """The JSON (exec) form of ``args`` (after any ``--flag=`` options), or None for shell form."""
        text = self.args
        while text.startswith("--"):
            text = text.split(None, 1)[1] if " " in text else ""
        if text.startswith("CMD "):  # HEALTHCHECK [options] CMD [...]
            text = text[4:]
        if not text.startswith("["):
            return None
        value = json.loads(text)
        assert isinstance(value, list)
        return [str(v) for v in value]


def instructions(text: str | None = None) -> list[Instruction]:
    """The Dockerfile's instructions, stages named by their ``AS`` alias (or their index)."""
    text = DOCKERFILE.read_text() if text is None else text
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not buf):
            continue  # comments may sit inside a continued instruction, too
        if line.endswith("\\"):
            buf += line[:-1].strip() + " "
            continue
        logical.append((buf + line).strip())
        buf = ""
    args: dict[str, str] = {}
    stage = ""
    out: list[Instruction] = []
    for n, line in enumerate(logical):
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "ARG" and not stage:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip()
        if keyword == "FROM":
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args.get(m.group(1) or m.group(2), ""), rest)
            parts = image.split()
            stage = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else str(n)
            rest = image
        out.append(Instruction(stage, keyword, rest.strip()))
    return out


def stage(name: str, instrs: list[Instruction] | None = None) -> list[Instruction]:
    """The instructions of stage ``name``."""
    return [i for i in (instrs or instructions()) if i.stage == name]


def env_of(instrs: list[Instruction]) -> dict[str, str]:
    """The ``ENV key=value ...`` settings of ``instrs``, in order (later ones win)."""
    env: dict[str, str] = {}
    for ins in instrs:
        if ins.keyword == "ENV":
            for token in shlex.split(ins.args):
                key, _, value = token.partition("=")
                env[key] = value
    return env


def ignored(relpath: str, patterns: list[str] | None = None) -> bool:
    """Whether the build context leaves ``relpath`` out (Docker semantics: the last match wins)."""
    if patterns is None:
        patterns = [
            p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")
        ]
    parts = relpath.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.strip("/")
        # A pattern matching a directory covers everything under it; ** matches any depth.
        regex = fnmatch.translate(pat).replace(".*.*/", "(.*/)?")
        if any(re.match(regex, prefix) for prefix in prefixes):
            result = not negate
    return result
