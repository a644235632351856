"""Alerts: when a unit keeps failing, recovers, misses a run, goes stale or runs slow.

``rules`` decides (pure), ``state`` applies the rules to the store, ``delivery`` sends
through apprise, ``service`` runs it all inside the daemon, ``cli`` is `observer alerts`.
"""
