"""Latency baselines: each probe's and step's usual latency from the stored history, and the
``latency_regression`` verdict on runs that are several times slower than it, several runs in a row.

- :mod:`~monitor.baselines.config`: the ``baselines:`` section of the config;
- :mod:`~monitor.baselines.percentile`: a percentile from fixed latency buckets (pure);
- :mod:`~monitor.baselines.judge`: baselines and streaks → a run's verdict (pure);
- :mod:`~monitor.baselines.service`: the result transformer the daemon runs between the runner and
  its sinks (refreshes baselines from the rollups, keeps the streaks, sets the metrics);
- :mod:`~monitor.baselines.view`: what the status page and ``/api/v1/status`` show.
"""
