"""`observer run`: wrap a cron job (or any command) into the same history as systemd's runs.

``wrapper`` runs one job and records it, ``job`` owns the child process, ``capture`` its
output, ``spool`` keeps runs the store could not take, ``schedule`` knows when a wrapped job
was due, ``service`` imports spooled runs in the daemon, ``cli`` is the command's arguments.
This package is imported by every cron job: it must stay light (no D-Bus, no Jinja2).
"""
