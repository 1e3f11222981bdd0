"""Run history: runs, their steps and hourly rollups; the store interface its users need, its SQL
implementation, the result sink, and the ``history``, ``uptime`` and ``migrate`` commands."""
