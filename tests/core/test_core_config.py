"""Config loading: interpolation, durations, secrets, cross checks and one clear error per mistake."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.config import load_config, parse_config
from monitor.configfile import ConfigError
from probes.base import format_duration, parse_duration
from probes.http import HttpOptions

KEY = "hk_test_" + "q" * 32

VALID = """\
environment: test
secrets:
  api_key: {key}
probes:
  - name: health
    kind: http
    interval: 30s
    timeout: 5s
    options:
      url: http://127.0.0.1:9/health
      bearer_secret: api_key
  - name: root
    kind: http
    depends_on: [health]
    options:
      url: http://127.0.0.1:9/
"""


def _parse(text: str, env: dict[str, str] | None = None) -> object:
    return parse_config(textwrap.dedent(text), source="config.yaml", env=env or {})


def _probe(extra: str = "", options: str = "url: http://127.0.0.1:9/", name: str = "p") -> str:
    """A one-probe config with ``extra`` probe keys and ``options`` (flow style)."""
    return (
        f"environment: test\nprobes:\n  - name: {name}\n    kind: http\n{extra}    options: {{{options}}}\n"
    )


INVALID: list[tuple[str, str, str]] = [
    ("unknown_top_key", "environment: t\nprobez: []\n", "probez: unknown key 'probez'"),
    ("missing_environment", "probes: []\n", "environment: required field is missing"),
    ("unknown_kind", _probe().replace("kind: http", "kind: ftp"), "probes[0].kind: unknown probe kind 'ftp'"),
    ("unknown_probe_key", _probe("    retries: 3\n"), "probes[0].retries: unknown key 'retries'"),
    ("unknown_option", _probe(options="url: http://x/, verb: GET"), "probes[0].options.verb: unknown key"),
    ("missing_url", _probe(options="method: GET"), "probes[0].options.url: required field is missing"),
    ("bad_url_scheme", _probe(options="url: ftp://x/"), "probes[0].options.url: must be an absolute http"),
    ("bad_status", _probe(options="url: http://x/, expected_status: [99]"), "HTTP statuses are 100-599"),
    ("bad_regex", _probe(options="url: http://x/, body_regex: '('"), "options.body_regex: invalid regular"),
    ("bad_duration", _probe("    interval: soon\n"), "probes[0].interval: invalid duration 'soon'"),
    ("negative_timeout", _probe("    timeout: -1\n"), "probes[0].timeout: Input should be greater than 0"),
    ("timeout_over_interval", _probe("    interval: 10s\n    timeout: 20s\n"), "timeout 20s is longer than"),
    (
        "jitter_over_interval",
        _probe("    interval: 10s\n    timeout: 5s\n    jitter: 10s\n"),
        "jitter 10s must",
    ),
    ("budget_over_timeout", _probe("    timeout: 5s\n    latency_budget: 5s\n"), "latency_budget 5s must be"),
    ("bad_name", _probe(name="Bad-Name"), "probes[0].name: String should match pattern"),
    (
        "duplicate_name",
        _probe() + "  - name: p\n    kind: http\n    options: {url: 'http://x/'}\n",
        "probes[1].name: duplicate probe name 'p'",
    ),
    (
        "unknown_dependency",
        _probe("    depends_on: [ghost]\n"),
        "probes[0].depends_on[0]: unknown probe 'ghost'",
    ),
    ("self_dependency", _probe("    depends_on: [p]\n"), "a probe cannot depend on itself"),
    (
        "dependency_cycle",
        "environment: t\nprobes:\n"
        "  - {name: a, kind: http, depends_on: [b], options: {url: 'http://x/'}}\n"
        "  - {name: b, kind: http, depends_on: [c], options: {url: 'http://x/'}}\n"
        "  - {name: c, kind: http, depends_on: [a], options: {url: 'http://x/'}}\n",
        "dependency cycle: a -> b -> c -> a",
    ),
    ("undefined_secret", _probe(options="url: http://x/, bearer_secret: nope"), "uses secret 'nope', which"),
    (
        "credential_in_plain_header",
        _probe(options="url: http://x/, headers: {Authorization: 'Bearer x'}"),
        "carries a credential",
    ),
    ("bad_listen", "environment: t\nlisten: localhost\n", "listen: listen must be host:port"),
    (
        "unset_variable",
        "environment: ${NOPE_UNSET}\n",
        "environment: environment variable NOPE_UNSET is not set",
    ),
    ("bad_yaml", "environment: [unclosed\n", "invalid YAML"),
    ("not_a_mapping", "- just\n- a list\n", "the top level must be a mapping"),
    ("bool_is_not_a_duration", _probe("    interval: yes\n"), "probes[0].interval: expected a duration"),
    ("bad_method", _probe(options="url: http://x/, method: FETCH"), "probes[0].options.method"),
    (
        "header_key_in_path",
        _probe(options="url: http://x/, headers: {X-Trace-Id: [1]}"),
        "probes[0].options.headers.X-Trace-Id: Input should be a valid string",
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment"), [(t, f) for _, t, f in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_config_is_one_clear_error(text: str, fragment: str) -> None:
    """Each mistake is rejected with one message naming the field path and the reason."""
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="config.yaml", env={})
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_error_names_the_yaml_line() -> None:
    """The error carries the file name and the line of the offending value."""
    text = VALID.format(key=KEY).replace("url: http://127.0.0.1:9/\n", "url: gopher://x/\n")
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="config.yaml", env={})
    line = next(i for i, line in enumerate(text.splitlines(), 1) if "gopher" in line)
    assert str(err.value).startswith(f"config.yaml:{line}: probes[1].options.url:")
    assert err.value.line == line


def test_valid_config_is_typed_and_frozen() -> None:
    """Durations become seconds, options become the kind's typed model, the config is immutable."""
    config = parse_config(VALID.format(key=KEY), env={})
    health = config.probe("health")
    assert (health.interval, health.timeout) == (30.0, 5.0)
    assert isinstance(health.options, HttpOptions)
    assert health.options.bearer_secret == "api_key"
    assert config.probe("root").depends_on == ["health"]
    with pytest.raises(ValueError, match="frozen"):
        health.interval = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("1500ms", 1.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("45", 45.0),
        ("1.5s", 1.5),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("1m30s", 90.0),
        ("1w", 604800.0),
    ],
    ids=["ms", "s", "m", "h", "plain", "fraction", "day", "compound", "min-sec", "week"],
)
def test_duration_syntax(written: str, seconds: float) -> None:
    """Probe durations take the one grammar: ms/s/m/h/d/w, compounds, or plain seconds."""
    config = _parse(_probe(f"    interval: {written}\n    timeout: 0.1\n"))
    assert config.probes[0].interval == seconds  # type: ignore[attr-defined]


def test_every_duration_field_speaks_the_same_grammar() -> None:
    """Probe, alerting and store durations accept the same units, each within its own bounds."""
    text = _probe("    interval: 1d\n    timeout: 250ms\n") + textwrap.dedent(
        """\
        alerting:
          rules: {reminder_interval: 1h30m}
          outbox: {backoff_base: 250ms, backoff_max: 1h, lease: 2m30s}
        store: {prune_interval: 1d}
        """
    )
    config = parse_config(text, source="config.yaml", env={})
    probe = config.probes[0]
    assert (probe.interval, probe.timeout) == (86400.0, 0.25)
    assert config.alerting.rules.reminder_interval == 5400.0
    assert (config.alerting.outbox.backoff_base, config.alerting.outbox.lease) == (0.25, 150.0)
    assert config.store.prune_interval == 86400.0


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("    interval: 5x\n", "5x", "probes[0].interval: invalid duration '5x'"),
        (
            "    timeout: 30m1h\n",
            "30m1h",
            "probes[0].timeout: invalid duration '30m1h': write each",
        ),
        ("    interval: 10 parsecs\n", "10 parsecs", "probes[0].interval: invalid duration"),
        ("    jitter: -1s\n", "-1s", "probes[0].jitter: invalid duration '-1s'"),
        (
            "    interval: 500ms\n    timeout: 100ms\n",
            "500ms",
            "probes[0].interval: interval must be at least 1s",
        ),
    ],
    ids=["unknown-unit", "unit-order", "word-unit", "negative", "below-bound"],
)
def test_wrong_duration_is_one_error_naming_the_field(field: str, value: str, fragment: str) -> None:
    """A duration in the wrong unit or out of the field's bounds is one error with the field path."""
    with pytest.raises(ConfigError) as err:
        _parse(_probe(field))
    assert fragment in str(err.value)


@pytest.mark.parametrize(
    ("seconds", "written"),
    [(0.25, "250ms"), (45.0, "45s"), (5400.0, "1h30m"), (86400.0, "1d"), (90.5, "90.5s"), (1209600.0, "2w")],
)
def test_format_duration_round_trips(seconds: float, written: str) -> None:
    """format_duration writes what parse_duration reads back."""
    assert format_duration(seconds) == written
    assert parse_duration(written) == seconds


def test_interpolation_with_defaults_and_escapes() -> None:
    """${VAR} reads the environment, ${VAR:-default} falls back when unset or empty, $${ is literal."""
    text = (
        "environment: ${ENV_NAME}\nlisten: ${LISTEN:-127.0.0.1:9999}\n"
        "probes:\n  - name: p\n    kind: http\n    interval: ${EVERY:-2m}\n    timeout: 5s\n"
        "    options: {url: '${BASE:-http://fallback}/health', json_equals: {note: '$${NOT_A_VAR}'}}\n"
    )
    config = parse_config(text, env={"ENV_NAME": "staging", "BASE": "", "EVERY": "10s"})
    assert config.environment == "staging"
    assert config.listen_address() == ("127.0.0.1", 9999)
    assert config.probes[0].interval == 10.0
    assert config.probes[0].options.url == "http://fallback/health"  # type: ignore[attr-defined]
    assert config.probes[0].options.json_equals == {"note": "${NOT_A_VAR}"}  # type: ignore[attr-defined]


def test_unset_variable_names_field_and_line() -> None:
    """An unset ${VAR} without default names the variable, the field path and the line."""
    text = "environment: t\nprobes:\n  - name: p\n    kind: http\n    options:\n      url: ${TARGET_URL}\n"
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="c.yaml", env={})
    assert str(err.value).startswith("c.yaml:6: probes[0].options.url: environment variable TARGET_URL")


def test_secret_from_file_is_stripped_and_collected(tmp_path: Path) -> None:
    """`NAME_file: path` reads secret NAME from the file; secret_values() finds it for maskers."""
    secret_file = tmp_path / "key"
    secret_file.write_text(KEY + "\n")
    config = parse_config(f"environment: t\nsecrets:\n  api_key_file: {secret_file}\n", env={})
    assert config.secret_map() == {"api_key": KEY}
    assert KEY in config.secret_values()
    assert KEY not in repr(config)


def test_unreadable_secret_file_is_an_error(tmp_path: Path) -> None:
    """A missing secret file is reported with its field path, not a traceback."""
    with pytest.raises(ConfigError, match=r"secrets\.api_key_file: cannot read .*No such file"):
        parse_config(f"environment: t\nsecrets:\n  api_key_file: {tmp_path}/absent\n", env={})


def test_timeout_over_interval_allowed_explicitly() -> None:
    """allow_timeout_over_interval lifts the timeout <= interval rule."""
    config = _parse(_probe("    interval: 10s\n    timeout: 20s\n    allow_timeout_over_interval: true\n"))
    assert config.probes[0].timeout == 20.0  # type: ignore[attr-defined]


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist is a ConfigError naming the file."""
    with pytest.raises(ConfigError, match=r"absent\.yaml: cannot read config file"):
        load_config(tmp_path / "absent.yaml")


def test_check_config_masks_secrets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config prints the effective config with every secret as ********** and exits 0."""
    path = tmp_path / "config.yaml"
    path.write_text(VALID.format(key="${THE_KEY}"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("THE_KEY", KEY)
        code = main(["check-config", "--config", str(path)])
    out, err = capsys.readouterr()
    assert code == 0
    assert KEY not in out + err
    assert "api_key: '**********'" in out
    assert "bearer_secret: api_key" in out
    assert "config OK" in err


def test_check_config_invalid_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An invalid config prints the one error (path and line) to stderr and exits 2."""
    path = tmp_path / "config.yaml"
    path.write_text(_probe("    interval: soon\n"))
    code = main(["check-config", "--config", str(path)])
    _out, err = capsys.readouterr()
    assert code == 2
    assert f"{path}:5: probes[0].interval: invalid duration 'soon'" in err


def test_config_path_from_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without --config, SYNTHMON_CONFIG names the file."""
    path = tmp_path / "other.yaml"
    path.write_text("environment: from-env\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHMON_CONFIG", str(path))
        assert main(["check-config"]) == 0
    assert "environment: from-env" in capsys.readouterr().out


EMPTY_SECRET = (
    "environment: t\nsecrets:\n  {secret}\nprobes:\n"
    "  - {{name: p, kind: http, options: {{url: 'http://x/', bearer_secret: api_key}}}}\n"
)


@pytest.mark.parametrize("value", ["", "   "], ids=["empty", "blank"])
def test_empty_secret_from_environment_is_refused(value: str) -> None:
    """A referenced secret whose environment variable is empty is refused, naming the variable."""
    text = EMPTY_SECRET.format(secret="api_key: ${SYNTHMON_API_KEY}")
    with pytest.raises(ConfigError) as err:
        parse_config(text, source="c.yaml", env={"SYNTHMON_API_KEY": value})
    assert str(err.value) == (
        "c.yaml:3: secrets.api_key: is empty (from environment variable SYNTHMON_API_KEY), "
        "but probes[0] (p) uses it"
    )


def test_empty_secret_file_is_refused(tmp_path: Path) -> None:
    """A referenced secret read from an empty file is refused, naming the file."""
    empty = tmp_path / "key"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=rf"secrets\.api_key_file: is empty \(from file {empty}\)"):
        parse_config(EMPTY_SECRET.format(secret=f"api_key_file: {empty}"), env={})


def test_empty_secret_nobody_uses_is_accepted() -> None:
    """An empty secret that no probe references does not block start-up."""
    text = "environment: t\nsecrets:\n  spare: ${SPARE:-}\n"
    assert parse_config(text, env={}).secret_map() == {"spare": ""}


STORE_PASSWORD = "s3cr" + "et-pw@x"  # generated-looking; the URL carries it percent-encoded


def test_check_config_masks_the_store_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """check-config shows store.url without its password, and the log masker knows the password."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "environment: t\nstore:\n  url: postgresql+psycopg://synthmon:${PW}@db.internal/synthmon\n"
    )
    encoded = STORE_PASSWORD.replace("@", "%40")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PW", encoded)
        code = main(["check-config", "--config", str(path)])
        config = load_config(path)
    out, err = capsys.readouterr()
    assert code == 0
    assert "url: postgresql+psycopg://synthmon:***@db.internal/synthmon" in out
    assert "s3cr" not in out + err
    assert {STORE_PASSWORD, encoded} <= set(config.secret_values())


STORE_INVALID: list[tuple[str, str, str]] = [
    ("unparseable_url", "store: {url: 'not a url'}", "store.url: not a database URL"),
    (
        "unsupported_backend",
        "store: {url: 'mysql://u:hunter2hunter2@h/db'}",
        "store.url: unsupported database 'mysql'; use one of: sqlite, postgresql",
    ),
    (
        "prune_interval_zero",
        "store: {prune_interval: 0}",
        "store.prune_interval: Input should be greater than 0",
    ),
    (
        "rollups_shorter_than_runs",
        "store: {retention_days: 30, rollup_retention_days: 7}",
        "store: rollup_retention_days (7) must be at least retention_days (30)",
    ),
]


@pytest.mark.parametrize(
    ("section", "fragment"), [(t, f) for _, t, f in STORE_INVALID], ids=[i for i, _, _ in STORE_INVALID]
)
def test_invalid_store_section(section: str, fragment: str) -> None:
    """Store mistakes stop start-up with the field path, and never echo the URL's password."""
    with pytest.raises(ConfigError) as err:
        parse_config(f"environment: t\n{section}\n", source="c.yaml", env={})
    assert fragment in str(err.value)
    assert "hunter2" not in str(err.value)


ONE_PROBE = "environment: t\nprobes:\n  - {name: p, kind: http, options: {url: 'http://x/'}}\n"

CROSS_INVALID: list[tuple[str, str, str]] = [
    (
        "override_of_unknown_probe",
        "alerting:\n  probes:\n    nosuch: {failure_threshold: 1}\n",
        "c.yaml:6: alerting.probes.nosuch: unknown probe 'nosuch'; configured: p",
    ),
    (
        "maintenance_of_unknown_probe",
        "alerting:\n  maintenance:\n    - {name: w, probes: [p, nosuch], start: '02:00', duration: 1h}\n",
        "alerting.maintenance[0].probes[1]: unknown probe 'nosuch'",
    ),
    (
        "webhook_not_http",
        "alerting:\n  slack: {webhook_url: 'hooks.slack.com/services/T0/B0/fakefakefake'}\n",
        "alerting.slack.webhook_url: must be an absolute http:// or https:// URL",
    ),
    (
        "api_url_not_http",
        "alerting:\n  slack: {bot_token: xoxb-fake, channel: '#c', api_url: 'ftp://slack.test/api'}\n",
        "alerting.slack.api_url: must be an absolute http:// or https:// URL",
    ),
    (
        "dispatch_interval_zero",
        "alerting:\n  outbox: {dispatch_interval: 0}\n",
        "alerting.outbox.dispatch_interval: Input should be greater than 0",
    ),
    (
        "diagnosis_without_condition",
        "diagnosis:\n  - {cause: everything, hint: matches any failure}\n",
        "diagnosis[0]: a diagnosis row needs at least one condition",
    ),
    (
        "diagnosis_unknown_probe",
        "diagnosis:\n  - {cause: c, hint: h, probe: q, http_status: 500}\n",
        "diagnosis[0].probe: unknown probe 'q'; configured: p",
    ),
    (
        "diagnosis_step_of_no_probe",
        "diagnosis:\n  - {cause: c, hint: h, step: upload}\n",
        "diagnosis[0].step: no configured probe reports a step 'upload'; their steps: request",
    ),
    (
        "diagnosis_step_not_of_its_probe",
        "diagnosis:\n  - {cause: c, hint: h, probe: p, step: upload}\n",
        "diagnosis[0].step: probe 'p' reports no step 'upload'; its steps: request",
    ),
]


@pytest.mark.parametrize(
    ("section", "fragment"), [(t, f) for _, t, f in CROSS_INVALID], ids=[i for i, _, _ in CROSS_INVALID]
)
def test_invalid_alerting_and_diagnosis_sections(section: str, fragment: str) -> None:
    """Alerting and diagnosis mistakes are refused with the field path, never echoing a webhook URL."""
    with pytest.raises(ConfigError) as err:
        parse_config(ONE_PROBE + section, source="c.yaml", env={})
    assert fragment in str(err.value)
    assert "fakefakefake" not in str(err.value)


def test_interval_below_one_second_is_refused() -> None:
    """A probe interval under 1s is refused: it would load the platform rather than check it."""
    with pytest.raises(ConfigError, match=r"probes\[0\]\.interval: interval must be at least 1s, got 0.5s"):
        _parse(_probe("    interval: 500ms\n    timeout: 100ms\n"))


def test_alerting_references_to_configured_probes_are_accepted() -> None:
    """Overrides, maintenance windows, https Slack URLs and conditional diagnosis rows pass."""
    config = parse_config(
        ONE_PROBE
        + "alerting:\n  probes: {p: {failure_threshold: 1}}\n"
        + "  maintenance: [{name: w, probes: [p], start: '02:00', duration: 1h}]\n"
        + "  slack: {webhook_url: 'https://hooks.slack.test/x', api_url: 'http://127.0.0.1:9/api'}\n"
        + "diagnosis:\n  - {cause: c, hint: h, step: request}\n"
        + "  - {cause: timed out, hint: h, probe: p, step: run, error_class: deadline_exceeded}\n",
        env={},
    )
    assert config.alerting.rule_for("p").failure_threshold == 1
