"""`observer daemon`: the one place recording, the store and the features' services meet.

``serve`` wires them together (asyncio tasks, sd_notify, the watchdog); ``target`` says what
the daemon runs against: the system's manager, or (``--user``) a user's own.
"""
