"""Machinery the probe kinds share: the HTTP step, platform conventions, subprocess isolation and
its child entry points, the MLflow client helpers, and secret masking.

The kinds themselves live one per module in ``probes/``; nothing here is a probe kind.
"""
