"""synthmon's daemon: config, runner, scheduler, metrics, server, history, alerting and the CLI.

Builds on the probe contract in :mod:`probes` (never the reverse). Importing this package has no
side effects: objects are built and wired only in :mod:`monitor.app`.
"""
