"""Recording: what systemd says over D-Bus and in the journal, turned into runs.

``bus`` and ``journal`` read systemd; ``correlator`` (pure, no I/O) merges both into runs,
with ``refused`` and ``starts`` as its books of refused starts and recent starts;
``attribution`` gives each output line to its run within that run's budget; ``intake`` is
what the daemon feeds (one host's correlator and output, or a central observer's per-host
ones); ``definitions`` (pure) and ``definition_files`` say what defined a run; ``events``
holds what systemd says, as the readers of the bus and the journal hand it on.
"""
