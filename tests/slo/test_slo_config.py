"""The slos: section: defaults, and bad values stop start-up with the field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.config import load_config, parse_config
from monitor.configfile import ConfigError
from monitor.slo.commands import load_slo_section

ROOT = Path(__file__).resolve().parents[2]
BASE = """
environment: test
store: {retention_days: 30}
probes:
  - {name: auth, kind: http, options: {url: "http://127.0.0.1:1/", step: get}}
  - {name: registry, kind: http, options: {url: "http://127.0.0.1:1/"}}
slos:
"""


def test_defaults_name_window_and_the_workbook_pairs() -> None:
    """A bare SLO is named after its probe (or probe/step), spans 30 days and gets the four pairs."""
    config = parse_config(
        BASE + "  - {probe: auth, objective: 99.9}\n  - {probe: auth, step: get, objective: 99}\n"
    )
    whole, step = config.slos
    assert (whole.slo_name, step.slo_name) == ("auth", "auth/get")
    assert whole.window == 30 * 86400
    assert [(a.label, a.factor, a.severity) for a in whole.burn_alerts] == [
        ("1h/5m", 14.4, "page"),
        ("6h/30m", 6.0, "page"),
        ("1d/2h", 3.0, "ticket"),
        ("3d/6h", 1.0, "ticket"),
    ]
    assert whole.budget == pytest.approx(0.001)
    assert whole.pseudo_probe == "slo:auth"


def test_a_short_window_keeps_only_the_default_pairs_that_fit() -> None:
    """A 1-day SLO keeps the 1h/5m, 6h/30m and 1d/2h pairs (a 3-day window cannot fit in it)."""
    config = parse_config(BASE + "  - {probe: auth, objective: 99, window: 1d}\n")
    assert [a.label for a in config.slos[0].burn_alerts] == ["1h/5m", "6h/30m", "1d/2h"]


@pytest.mark.parametrize(
    ("slo", "path", "words"),
    [
        ("{probe: nope, objective: 99}", "slos[0].probe", "unknown probe 'nope'; configured: auth, registry"),
        ("{probe: auth, objective: 100}", "slos[0].objective", "less than 100"),
        ("{probe: auth, objective: 0}", "slos[0].objective", "greater than 0"),
        ("{probe: auth, objective: 99, window: 60d}", "slos[0].window", "store.retention_days: 30"),
        ("{probe: auth, objective: 99, window: fortnight}", "slos[0].window", "duration"),
        (
            "{probe: auth, objective: 99, alerts: [{long: 5m, short: 1h, factor: 2}]}",
            "slos[0].alerts[0].short",
            "must be shorter than long window 5m",
        ),
        (
            "{probe: auth, objective: 99, window: 1d, alerts: [{long: 3d, short: 6h, factor: 1}]}",
            "slos[0].alerts[0].long",
            "longer than the SLO window",
        ),
        (
            "{probe: auth, objective: 99, alerts: [{long: 1h, short: 5m, factor: 0}]}",
            "slos[0].alerts[0].factor",
            "",
        ),
        ("{probe: auth, objective: 99, severity: page}", "slos[0]", "unknown key 'severity'"),
        # A step goes into PromQL selectors (synthmon slo rules): a quote there would break them.
        ("{probe: auth, step: 'get\"} or vector(1) #', objective: 99}", "slos[0].step", "pattern"),
        # An objective on a step the probe never reports would count no run, ever.
        (
            "{probe: auth, step: got, objective: 99}",
            "slos[0].step",
            "probe 'auth' has no step 'got'; its steps: get",
        ),
    ],
    ids=[
        "unknown-probe",
        "100",
        "0",
        "past-retention",
        "bad-duration",
        "short-longer",
        "long-past-window",
        "zero-factor",
        "unknown-key",
        "step-not-a-step-name",
        "step-the-probe-lacks",
    ],
)
def test_bad_slos_name_the_field(slo: str, path: str, words: str) -> None:
    """Each mistake is one ConfigError naming the field path and saying what is wrong."""
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + f"  - {slo}\n")
    assert exc.value.path.startswith(path)
    assert words in str(exc.value)


def test_a_derived_name_too_long_for_its_incidents_is_refused() -> None:
    """``slo:<probe>/<step>`` names the SLO's incidents (a column of 100 characters): a step name
    that makes it longer needs a shorter ``name``, at start-up rather than at the first burn."""
    step = "s" * 100
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + f"  - {{probe: auth, step: {step}, objective: 99}}\n")
    assert exc.value.path == "slos[0].step"
    assert "name:" in str(exc.value)
    base = BASE.replace("step: get", f"step: {step}")
    named = parse_config(base + f"  - {{probe: auth, step: {step}, objective: 99, name: auth-long}}\n")
    assert named.slos[0].pseudo_probe == "slo:auth-long"


def test_two_slos_with_one_name_are_refused() -> None:
    """Names identify SLOs in metrics, rules and incidents: a second one is an error on its name."""
    with pytest.raises(ConfigError) as exc:
        parse_config(BASE + "  - {probe: auth, objective: 99}\n  - {probe: auth, objective: 99.9}\n")
    assert exc.value.path == "slos[1].name"
    assert "duplicate SLO name 'auth' (also slos[0])" in str(exc.value)


def test_the_commands_read_the_slos_without_the_probes_secrets(tmp_path: Path) -> None:
    """`synthmon slo` validates slos: against probe names and retention, secrets unset or not."""
    path = tmp_path / "config.yaml"
    path.write_text(
        BASE.replace("environment: test", "environment: test\nsecrets:\n  api_key: ${UNSET_FOR_SLO_TEST}")
        + "  - {probe: registry, objective: 99.5}\n"
    )
    section = load_slo_section(str(path))
    assert [s.slo_name for s in section.slos] == ["registry"]
    path.write_text(BASE + "  - {probe: nope, objective: 99.5}\n")
    with pytest.raises(ConfigError) as exc:
        load_slo_section(str(path))
    assert exc.value.path == "slos[0].probe"
    assert exc.value.line == 8


def test_the_shipped_config_declares_slos_for_auth_and_registration() -> None:
    """config.yaml's SLOs validate and read as documented."""
    config = load_config(ROOT / "config.yaml", env={"SYNTHMON_API_KEY": "k"})
    assert [(s.slo_name, s.objective, s.window) for s in config.slos] == [
        ("auth", 99.5, 30 * 86400.0),
        ("registration", 99.5, 30 * 86400.0),
    ]


def test_alerting_overrides_and_maintenance_can_name_an_slo() -> None:
    """An SLO's burn incidents belong to its pseudo-probe ``slo:<name>``: alerting.probes and
    maintenance windows may name it like a probe; a name no SLO has stops start-up at its path."""
    alerting = """
alerting:
  probes:
    "slo:auth": {failure_threshold: 5}
  maintenance:
    - {name: backups, days: [sun], start: "02:00", duration: 1h, probes: ["slo:auth/get"]}
"""
    slos = "  - {probe: auth, objective: 99.9}\n  - {probe: auth, step: get, objective: 99}\n"
    config = parse_config(BASE + slos + alerting)
    assert config.alerting.rule_for("slo:auth").failure_threshold == 5
    assert (
        config.alerting.rule_for("slo:auth/get").failure_threshold == config.alerting.rules.failure_threshold
    )
    with pytest.raises(ConfigError) as info:
        parse_config(BASE + slos + alerting.replace('"slo:auth"', '"slo:registry"'))
    assert info.value.path == "alerting.probes.slo:registry"
    assert "unknown probe 'slo:registry'" in str(info.value)


def test_a_step_slo_is_checked_against_the_steps_the_probe_reports() -> None:
    """Built-in kinds know their steps from their options (the shipped probes' are checked against
    real runs in the sandbox tests): the registration probe's upload is ``log_model``, and an SLO
    on a step the options turn off is refused like a misspelt one."""
    env = {"SYNTHMON_API_KEY": "k"}
    text = (ROOT / "config.yaml").read_text()
    slo = "\n  - {probe: registration, step: log_model, objective: 99, name: uploads}\n"
    config = parse_config(text.rstrip("\n") + slo, env=env)
    assert config.slos[-1].step == "log_model"
    with pytest.raises(ConfigError) as exc:
        parse_config(text.rstrip("\n") + slo.replace("log_model", "register_model"), env=env)
    assert exc.value.path == f"slos[{len(config.slos) - 1}].step"
    assert "its steps: set_experiment, train, log_model, register, wait_ready" in str(exc.value)
