"""Any file given as the config ends in a valid config or one line on stderr and exit 2.

``configs/`` holds one mistake per file, binary files included; every one goes through
``check-config``, ``run`` and ``once`` with secrets in the environment, and must answer exit 2 with
a single line naming the right field (or file-level problem) and no secret in any form.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import parse_config
from monitor.configfile import MAX_CONFIG_BYTES, ConfigError, decode_config

CONFIGS = Path(__file__).parent / "configs"
REPO = Path(__file__).resolve().parents[2]
MASK = "**********"

# Secrets built from parts and shaped unlike an API key or Slack token, so only masking by value
# (not the key-shaped patterns) can hide them.
API_KEY = "Zq9-" + "corpus-" + "secret-41"
STORE_PASSWORD = "pw-" + "corpus-" + "secret-77"
WEBHOOK_SECRET = "wh-" + "corpus-" + "secret-93"
BOT_TOKEN = "xoxb-" + "corpus-" + "secret-12345"
ENV = {
    "SYNTHMON_API_KEY": API_KEY,
    "STORE_PASSWORD": STORE_PASSWORD,
    "SLACK_WEBHOOK_URL": "https://hooks.example.test/services/T0/B0/" + WEBHOOK_SECRET,
    "SLACK_BOT_TOKEN": BOT_TOKEN,
}
SECRETS = (API_KEY, STORE_PASSWORD, WEBHOOK_SECRET, BOT_TOKEN)

#: File -> regular expression the one line must contain: the field path, or the file-level reason.
EXPECTED: dict[str, str] = {
    "alerting_threshold_text.yaml": r":4: alerting\.rules\.failure_threshold: ",
    "alerting_unknown_probe.yaml": r":4: alerting\.probes\.nope: unknown probe 'nope'",
    "alias_bomb.yaml": r"expands to more than 100000 values",
    "authorization_header_inline.yaml": r"probes\[0\]\.options: header 'Authorization' carries a credential",
    "bad_indentation.yaml": r":4: invalid YAML: ",
    "bearer_secret_undefined.yaml": r"probes\[0\]\.options: uses secret 'api_key'",
    "binary_elf_header.bin": r":1: invalid YAML: character #x007f",
    "binary_gzip.yaml.gz": r":1: not UTF-8 text \(byte 0x8b",
    "binary_png.png": r":1: not UTF-8 text \(byte 0x89 at offset 0\)",
    "binary_random.bin": r":1: not UTF-8 text",
    "binary_zip_header.zip": r":1: invalid YAML: character #x0003",
    "binary_zlib.bin": r":1: not UTF-8 text",
    "body_regex_with_the_api_key.yaml": r"probes\[0\]\.options\.body_regex: invalid regular expression",
    "crlf_line_endings.yaml": r":5: probes\[0\]\.interval: invalid duration 'soon'",
    "deep_nesting.yaml": r"nested deeper than 64 levels",
    "depends_on_cycle.yaml": r"probes\[0\]\.depends_on: dependency cycle: a -> b -> a",
    "depends_on_unknown.yaml": r"probes\[0\]\.depends_on\[0\]: unknown probe 'auth'",
    "slo_step_unknown.yaml": r"slos\[0\]\.step: probe 'health' has no step 'register_model'",
    "diagnosis_bad_regex.yaml": r"diagnosis\[0\]\.body_regex: invalid regular expression",
    "diagnosis_without_condition.yaml": r"diagnosis\[0\]: a diagnosis row needs at least one condition",
    "diagnosis_step_unknown.yaml": r"diagnosis\[0\]\.step: probe 'health' reports no step 'upload'",
    "duplicate_flow_key.yaml": r":5: probes\[0\]\.options\.url: duplicate key 'url'",
    "duplicate_probe_key.yaml": r":6: probes\[0\]\.interval: duplicate key 'interval' \(first on line 5",
    "duplicate_probe_name.yaml": r":6: probes\[1\]\.name: duplicate probe name 'health'",
    "duplicate_secret.yaml": r":4: secrets\.api_key: duplicate key 'api_key' \(first on line 3",
    "duplicate_top_level_key.yaml": r":3: environment: duplicate key 'environment' \(first on line 1",
    "empty.yaml": r"environment: required field is missing",
    "environment_is_a_list.yaml": r":1: environment: ",
    "environment_missing.yaml": r"environment: required field is missing",
    "escape_sequence.yaml": r":2: invalid YAML: character #x001b",
    "expected_status_out_of_range.yaml": r"probes\[0\]\.options\.expected_status: HTTP statuses are 100-599",
    "interval_huge.yaml": r"probes\[0\]\.interval: .*longer than the maximum of 7d",
    "interval_inf.yaml": r":5: probes\[0\]\.interval: must be a finite number",
    "interval_is_the_api_key.yaml": r"probes\[0\]\.interval: invalid duration '\*{10}'",
    "interval_nan.yaml": r":5: probes\[0\]\.interval: must be a finite number",
    "interval_too_short.yaml": r"probes\[0\]\.interval: interval must be at least 1s",
    "interval_yes.yaml": r"probes\[0\]\.interval: expected a duration",
    "jitter_over_interval.yaml": r"probes\[0\]\.jitter: jitter 10s must be shorter",
    "kind_is_the_api_key.yaml": r"probes\[0\]\.kind: unknown probe kind '\*{10}'",
    "kind_unknown.yaml": r"probes\[0\]\.kind: unknown probe kind 'ftp'",
    "latency_budget_over_timeout.yaml": r"probes\[0\]\.latency_budget: ",
    "latin1_value.yaml": r":3: not UTF-8 text \(byte 0xe9",
    "listen_is_the_api_key.yaml": r":4: listen: .*got '\*{10}'",
    "listen_is_the_slack_webhook.yaml": r"listen: .*got '\*{10}'",
    "listen_is_the_store_password.yaml": r"listen: .*got '\*{10}'",
    "listen_port_too_big.yaml": r":2: listen: listen must be host:port",
    "listen_with_line_separator.yaml": r":2: listen: listen must be host:port",
    "listen_with_newline.yaml": r":2: listen: listen must be host:port",
    "listen_without_port.yaml": r":2: listen: listen must be host:port",
    "method_unknown.yaml": r"probes\[0\]\.options\.method: ",
    "multiple_documents.yaml": r"invalid YAML: expected a single document",
    "nul_byte.yaml": r":2: invalid YAML: character #x0000",
    "only_comments.yaml": r"environment: required field is missing",
    "options_not_a_mapping.yaml": r"probes\[0\]\.options: ",
    "probe_name_uppercase.yaml": r"probes\[0\]\.name: ",
    "probe_not_a_mapping.yaml": r"probes\[0\]: ",
    "probes_not_a_list.yaml": r":2: probes: ",
    "python_object_tag.yaml": r":2: invalid YAML: could not determine a constructor",
    "recursive_alias.yaml": r":2: an alias refers to the value that contains it",
    "secret_empty_but_used.yaml": r"secrets\.api_key: is empty \(from environment variable SYNTHMON_EMPTY",
    "secret_env_unset.yaml": r"secrets\.api_key: environment variable SYNTHMON_UNSET_FOR_TESTS is not set",
    "secret_file_missing.yaml": r"secrets\.api_key_file: cannot read /nonexistent/synthmon/key",
    "secret_name_invalid.yaml": r"secrets\.API-KEY: secret names are",
    "slack_token_without_channel.yaml": r"alerting\.slack: slack\.bot_token needs slack\.channel",
    "slack_webhook_not_http.yaml": r"alerting\.slack\.webhook_url: must be an absolute",
    # A type the store's duration parser does not expect: the path once that parser reports it.
    "store_prune_interval_list.yaml": r"store\.prune_interval|a value has the wrong type",
    "store_retention_negative.yaml": r":3: store\.retention_days: ",
    "store_url_mysql.yaml": r"store\.url: unsupported database 'mysql'",
    "tab_indentation.yaml": r":3: invalid YAML: .*'\\t'",
    "timeout_negative.yaml": r"probes\[0\]\.timeout: ",
    "timeout_over_interval.yaml": r"probes\[0\]\.timeout: timeout 20s is longer than interval 10s",
    "top_level_list.yaml": r"the top level must be a mapping",
    "top_level_scalar.yaml": r"the top level must be a mapping",
    "truncated_utf8.yaml": r":3: not UTF-8 text",
    "unclosed_bracket.yaml": r"invalid YAML: ",
    "unclosed_quote.yaml": r"invalid YAML: .*quoted scalar",
    "undefined_alias.yaml": r":2: invalid YAML: found undefined alias 'nowhere'",
    "unhashable_key.yaml": r"invalid YAML: .*unhashable key",
    "unknown_alerting_key.yaml": r"alerting\.slak: unknown key 'slak'; did you mean alerting\.slack\?",
    "unknown_option_typo.yaml": r"expected_statuses: .*did you mean probes\[0\]\.options\.expected_status\?",
    "unknown_probe_key_typo.yaml": r"probes\[0\]\.timout: unknown key .*did you mean probes\[0\]\.timeout\?",
    "unknown_store_key.yaml": r"store\.retention: unknown key .*did you mean store\.retention_days\?",
    "unknown_tag.yaml": r":2: invalid YAML: could not determine a constructor for the tag '!vault'",
    "unknown_top_level_typo.yaml": r":2: probs: unknown key 'probs'; did you mean probes\?",
    "unknown_web_key.yaml": r"web\.basic_auth_user: unknown key .*did you mean web\.basic_auth_users\?",
    "url_is_the_api_key.yaml": r"probes\[0\]\.options\.url: must be an absolute",
    "url_relative.yaml": r"probes\[0\]\.options\.url: must be an absolute",
    "utf16_with_bom.yaml": r":1: not UTF-8 text \(byte 0xff at offset 0\)",
    "utf8_bom_unknown_key.yaml": r":2: probez: unknown key 'probez'; did you mean probes\?",
    "web_cert_missing.yaml": r"web\.tls_server_config\.cert_file: cannot read /nonexistent/synthmon\.crt",
    "web_config_file_missing.yaml": r":3: web\.config_file: .*cannot read config file",
    "web_metrics_without_users.yaml": r"web\.protect_metrics: needs basic_auth_users",
    "web_plain_password.yaml": r"web\.basic_auth_users\.admin: must be a bcrypt hash",
    "web_user_with_colon.yaml": r"web\.basic_auth_users\.a:b: a user name",
}

COMMANDS = {
    "check-config": ["check-config", "-q"],
    "run": ["run", "--log-format", "json"],
    "once": ["once", "--format", "json"],
}


def _secret_forms(secret: str) -> list[str]:
    return [secret, repr(secret)[1:-1], secret.encode().hex()]


def _assert_one_clean_line(stderr: str, stdout: str, expected: str) -> None:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert stderr.endswith("\n"), stderr
    assert lines[0].startswith("synthmon: invalid config: "), stderr
    assert "Traceback" not in stderr
    assert re.search(expected, lines[0]), lines[0]
    # Nothing a terminal would act on, and nothing on stdout (scripts parse it).
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", stderr), repr(stderr)
    assert stdout == ""
    for secret in SECRETS:
        for form in _secret_forms(secret):
            assert form not in stderr, (secret, stderr)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets the corpus files reference, in the environment as the daemon would see them."""
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SYNTHMON_UNSET_FOR_TESTS", raising=False)
    monkeypatch.delenv("SYNTHMON_EMPTY_FOR_TESTS", raising=False)


def test_the_corpus_is_complete() -> None:
    """Every file in configs/ has an expectation and every expectation a file (at least 60)."""
    assert sorted(p.name for p in CONFIGS.iterdir()) == sorted(EXPECTED)
    assert len(EXPECTED) >= 60
    binary = [p for p in CONFIGS.iterdir() if b"\0" in p.read_bytes() or not _is_utf8(p.read_bytes())]
    assert len(binary) >= 6


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize("command", sorted(COMMANDS), ids=sorted(COMMANDS))
@pytest.mark.parametrize("name", sorted(EXPECTED), ids=sorted(EXPECTED))
def test_bad_config_is_one_line_and_exit_2(
    name: str, command: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Each bad file: exit 2, one line naming the field (or the file's problem), no secret, no traceback."""
    code = main(["--config", str(CONFIGS / name), *COMMANDS[command]])
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    _assert_one_clean_line(err, out, EXPECTED[name])


SUBPROCESS_CASES = [
    "binary_random.bin",
    "alias_bomb.yaml",
    "duplicate_probe_key.yaml",
    "listen_is_the_api_key.yaml",
]


@pytest.mark.parametrize("command", sorted(COMMANDS), ids=sorted(COMMANDS))
@pytest.mark.parametrize("name", SUBPROCESS_CASES, ids=SUBPROCESS_CASES)
def test_bad_config_through_the_real_command(name: str, command: str, tmp_path: Path) -> None:
    """The installed entry point, in its own process: exit 2 and the same single line."""
    env = {**os.environ, **ENV, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "monitor", "--config", str(CONFIGS / name), *COMMANDS[command]],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    _assert_one_clean_line(proc.stderr, proc.stdout, EXPECTED[name])


@pytest.mark.usefixtures("secret_env")
def test_a_file_over_the_cap_is_refused_unread(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A file larger than the cap (a log, a dump) is one line, without parsing a megabyte of YAML."""
    big = tmp_path / "config.yaml"
    big.write_bytes(b"environment: test\n" + b"# padding\n" * (MAX_CONFIG_BYTES // 10 + 1))
    assert main(["--config", str(big), "check-config", "-q"]) == 2
    out, err = capsys.readouterr()
    _assert_one_clean_line(err, out, r"larger than 1024 KiB")


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize("what", ["missing", "directory"])
def test_an_unreadable_path_is_one_line(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing file or a directory given as --config: one line naming why, exit 2."""
    path = tmp_path / "nope.yaml" if what == "missing" else tmp_path
    assert main(["--config", str(path), "check-config"]) == 2
    out, err = capsys.readouterr()
    _assert_one_clean_line(err, out, r"cannot read config file: ")


def test_random_bytes_and_mutations_only_ever_raise_config_error() -> None:
    """Seeded random bytes and mutations of the shipped config: a Config or a one-line ConfigError."""
    rng = random.Random(20260412)
    base = (REPO / "config.yaml").read_text()
    tokens = ["[", "]", "{", "}", ": ", "- ", "&a ", "*a", "!!binary ", "~", ".inf", "1e999", "'", '"',
              "\n", "\t", "<<: *a", "? ", "---\n", "${SYNTHMON_API_KEY}", "$${", "\u2028", "\x85", "\ufeff",
              "\x00"]  # fmt: skip
    env = {"SYNTHMON_API_KEY": API_KEY, "SLACK_WEBHOOK_URL": ENV["SLACK_WEBHOOK_URL"]}
    samples: list[bytes] = [
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 600))) for _ in range(150)
    ]
    for _ in range(600):
        text = base
        for _ in range(rng.randint(1, 5)):
            pos = rng.randrange(len(text) + 1)
            if rng.random() < 0.5:
                text = text[:pos] + rng.choice(tokens) + text[pos:]
            else:
                text = text[:pos] + text[pos + rng.randint(1, 40) :]
        samples.append(text.encode())
    messages: list[str] = []
    for raw in samples:
        try:
            parse_config(decode_config(raw, source="c.yaml"), source="c.yaml", env=env)
        except ConfigError as exc:
            messages.append(str(exc))
    assert [m for m in messages if "\n" in m or API_KEY in m] == []
    refused = len(messages)
    assert refused > len(samples) // 2  # the mutations do break configs, so the loop tested something


#: Field kind -> a config line putting ``${S}`` there; ``True`` when the message quotes the value.
FIELD_KINDS: dict[str, tuple[str, bool]] = {
    "host_port": ("listen: '${S}'", True),
    "pattern_string": ("environment: '${S}'!", False),
    "probe_name": ("probes: [{name: '${S}', kind: http, options: {url: 'http://127.0.0.1:9/'}}]", False),
    "choice": ("probes: [{name: a, kind: '${S}', options: {url: 'http://127.0.0.1:9/'}}]", True),
    "duration": (
        "probes: [{name: a, kind: http, interval: '${S}', options: {url: 'http://127.0.0.1:9/'}}]",
        True,
    ),
    "reference": ("probes: [{name: a, kind: http, depends_on: ['${S}'], options: {url: 'http://x/'}}]", True),
    "url": ("probes: [{name: a, kind: http, options: {url: 'ftp://${S}/'}}]", False),
    "literal": ("probes: [{name: a, kind: http, options: {url: 'http://x/', method: '${S}'}}]", False),
    "integer_list": (
        "probes: [{name: a, kind: http, options: {url: 'http://x/', expected_status: ['${S}']}}]",
        False,
    ),
    "secret_name": (
        "probes: [{name: a, kind: http, options: {url: 'http://x/', bearer_secret: '${S}'}}]",
        True,
    ),
    "header": (
        "probes: [{name: a, kind: http, options: {url: 'http://x/', headers: {X-API-Key: '${S}'}}}]",
        False,
    ),
    "regex": ("diagnosis: [{cause: x, hint: y, body_regex: '(${S}'}]", True),
    "integer": ("store: {retention_days: '${S}'}", False),
    "database_url": ("store: {url: '${S}://u@h/db'}", False),
    "webhook_url": ("alerting: {slack: {api_url: 'ftp://${S}'}}", False),
    "file_path": ("web: {tls_server_config: {cert_file: '/nonexistent/${S}', key_file: k}}", True),
    "bcrypt_hash": ("web: {basic_auth_users: {admin: '${S}'}}", False),
}

#: Where a secret comes from -> the config lines that make ``${S}`` one (``{file}`` is a secret file).
SECRET_SOURCES: dict[str, str] = {
    "secrets_inline": "secrets: {api_key: '${S}'}",
    "secrets_file": "secrets: {api_key_file: '{file}'}",
    "slack_webhook": "alerting: {slack: {webhook_url: 'https://hooks.example.test/${S}'}}",
    "slack_token": "alerting: {slack: {bot_token: '${S}', channel: '#c'}}",
    "store_password": "store: {url: 'postgresql+psycopg://u:${S}@127.0.0.1/db'}",
}


@pytest.mark.parametrize("source", sorted(SECRET_SOURCES), ids=sorted(SECRET_SOURCES))
@pytest.mark.parametrize("kind", sorted(FIELD_KINDS), ids=sorted(FIELD_KINDS))
def test_a_secret_in_any_field_is_masked_in_the_message(kind: str, source: str, tmp_path: Path) -> None:
    """Whatever field a configured secret lands in, the validation message shows it masked, never raw."""
    secret = "Qm7-" + "field-" + "secret-5521"
    secret_file = tmp_path / "key"
    secret_file.write_text(secret + "\n")
    line, quoted = FIELD_KINDS[kind]
    origin = SECRET_SOURCES[source].replace("{file}", str(secret_file))
    if source == "secrets_file":
        line = line.replace("${S}", secret)  # the value itself: it reaches the config only from the file
    # Sections a kind and a source both configure are merged by writing the kind's line last in YAML
    # flow style would duplicate the key; such pairs carry the secret through the kind's own line.
    if origin.split(":")[0] == line.split(":")[0]:
        origin = ""
    text = f"environment: test\n{origin}\n{line}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml", env={"S": secret})
    message = str(caught.value)
    assert secret not in message
    assert repr(secret)[1:-1] not in message
    if quoted and origin:
        assert MASK in message, message
