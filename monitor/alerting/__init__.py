"""Incidents and notifications: the pure state machine and silences, the store interface its users
need and its SQL implementation (transitions, outbox claims, threads, silences), the incident sink,
the outbox dispatcher, the channels (Slack, log) and the ``silence`` command."""
