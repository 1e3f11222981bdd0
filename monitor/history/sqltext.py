"""The SQLite text of the history reads, GENERATED from :mod:`monitor.history.readsql`
(``make sqltext``); do not edit. A test checks it matches what SQLAlchemy compiles.
"""

from typing import Any

#: Statement name -> (SQL with named parameters, the values of the fixed parameters).
SQLITE: dict[str, tuple[str, dict[str, Any]]] = {
    "runs": (
        "SELECT runs.probe, runs.kind, runs.run_id, runs.environment, runs.location, runs.started_at, runs.duration_s, runs.status, runs.detail \n"
        "FROM runs \n"
        "WHERE runs.started_at >= :since ORDER BY runs.started_at DESC, runs.id DESC\n"
        " LIMIT :limit OFFSET :param_1",
        {"param_1": 0},
    ),
    "probe_runs": (
        "SELECT runs.probe, runs.kind, runs.run_id, runs.environment, runs.location, runs.started_at, runs.duration_s, runs.status, runs.detail \n"
        "FROM runs \n"
        "WHERE runs.started_at >= :since AND runs.probe = :probe ORDER BY runs.started_at DESC, runs.id DESC\n"
        " LIMIT :limit OFFSET :param_1",
        {"param_1": 0},
    ),
    "raw_run_counts": (
        "SELECT runs.probe, count(*) AS count_1, coalesce(sum(CASE WHEN (runs.status = :status_1) THEN :param_1 ELSE :param_2 END), :coalesce_2) AS coalesce_1, coalesce(sum(CASE WHEN (runs.status = :status_2) THEN :param_3 ELSE :param_4 END), :coalesce_4) AS coalesce_3, coalesce(sum(CASE WHEN (runs.status = :status_3) THEN :param_5 ELSE :param_6 END), :coalesce_6) AS coalesce_5, coalesce(sum(runs.duration_s), :coalesce_8) AS coalesce_7, coalesce(max(runs.duration_s), :coalesce_10) AS coalesce_9 \n"
        "FROM runs \n"
        "WHERE runs.started_at >= :start AND runs.started_at < :end GROUP BY runs.probe",
        {
            "status_1": "FAIL",
            "param_1": 1,
            "param_2": 0,
            "coalesce_2": 0,
            "status_2": "ERROR",
            "param_3": 1,
            "param_4": 0,
            "coalesce_4": 0,
            "status_3": "DEGRADED",
            "param_5": 1,
            "param_6": 0,
            "coalesce_6": 0,
            "coalesce_8": 0.0,
            "coalesce_10": 0.0,
        },
    ),
    "raw_step_counts": (
        "SELECT steps.probe, steps.name, count(*) AS count_1, coalesce(sum(CASE WHEN (steps.status = :status_1) THEN :param_1 ELSE :param_2 END), :coalesce_2) AS coalesce_1, coalesce(sum(CASE WHEN (steps.status = :status_2) THEN :param_3 ELSE :param_4 END), :coalesce_4) AS coalesce_3, coalesce(sum(CASE WHEN (steps.status = :status_3) THEN :param_5 ELSE :param_6 END), :coalesce_6) AS coalesce_5, coalesce(sum(steps.duration_s), :coalesce_8) AS coalesce_7, coalesce(max(steps.duration_s), :coalesce_10) AS coalesce_9 \n"
        "FROM steps \n"
        "WHERE steps.started_at >= :start AND steps.started_at < :end GROUP BY steps.probe, steps.name",
        {
            "status_1": "FAIL",
            "param_1": 1,
            "param_2": 0,
            "coalesce_2": 0,
            "status_2": "ERROR",
            "param_3": 1,
            "param_4": 0,
            "coalesce_4": 0,
            "status_3": "DEGRADED",
            "param_5": 1,
            "param_6": 0,
            "coalesce_6": 0,
            "coalesce_8": 0.0,
            "coalesce_10": 0.0,
        },
    ),
    "rollup_counts": (
        "SELECT rollups.probe, rollups.step, sum(rollups.runs) AS sum_1, sum(rollups.failures) AS sum_2, sum(rollups.errors) AS sum_3, sum(rollups.degraded) AS sum_4, sum(rollups.duration_sum) AS sum_5, max(rollups.duration_max) AS max_1 \n"
        "FROM rollups \n"
        "WHERE rollups.hour >= :first AND rollups.hour < :end GROUP BY rollups.probe, rollups.step",
        {},
    ),
}
