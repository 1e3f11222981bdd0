"""Reliability and security: bad input of every kind ends in one clear line, never a leak."""
