"""Incidents, notifiers and the outbox dispatcher (issue #5)."""
