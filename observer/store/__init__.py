"""The store: the SQLite file every part reads, and the daemon's one writer.

``database`` opens the file and writes batches of runs; ``writer`` is the daemon's writer
thread; ``schema`` the tables and their upgrades; ``summary`` each unit's kept state;
``retention`` deletes old runs; ``hosts`` which hosts the runs came from.
"""
