"""Alerts: when a unit keeps failing, recovers, misses a run, goes stale or runs slow.

``config`` reads ``[alerts]``, ``rules`` decides (pure), ``state`` applies the rules to the
store, ``outbox`` keeps the deliveries due, ``message`` writes them, ``secrets`` reads the
channels' URLs, ``send`` delivers through apprise, ``service`` runs it all inside the
daemon, ``cli`` is `observer alerts`.
"""
