"""Run history: the HistoryStore interface and its SQLAlchemy Core implementation (issue #5)."""
