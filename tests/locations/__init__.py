"""Tests of locations: where a daemon probes from, and the quorum of locations before a page."""
