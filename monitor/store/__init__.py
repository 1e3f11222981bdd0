"""The database layer: engine and store threads, the schema and its migrations, the schema gate,
the write queue, outage classification, retention scheduling and the store's own metrics.

It imports no feature package: history and alerting build their SQL stores on
:class:`monitor.store.database.Database` and never see each other.
"""
