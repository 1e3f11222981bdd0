"""Service level objectives: attainment, error budget and burn rates per probe or step, from the
history store; burn-rate incidents through the alerting path; metrics, the ``synthmon slo``
commands, ``/api/v1/slo``, the status page section and generated Prometheus rules.

It reads history and alerting through their protocols; neither of them imports it (app.py wires it).
"""
