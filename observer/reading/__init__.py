"""Reading: the questions people ask of recorded runs, answered from the store.

``history`` and ``stats`` query (plain data, no printing), ``render`` makes tables and JSON,
``follow`` watches for runs as they finish, ``problems`` reads what the alerts found, and
``cli`` holds the reading commands' options (`status`, `history`, `show`, `diff`, `last-failure`,
`stats`, `runs`) and ``commands`` what they do.
"""
