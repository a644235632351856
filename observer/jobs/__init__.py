"""The job registry: jobs declared in /etc/observer/jobs.toml (or a user's
~/.config/observer/jobs.toml), run by systemd timers.

``jobfile.py`` reads and checks the file, ``schedule.py`` turns schedules into timer
settings (pure), ``units.py`` writes the unit files with every value quoted, ``crontab.py``
turns a crontab into a jobs file, ``apply.py`` makes the machine match the file (plan,
then change), ``alert_rules.py`` hands the jobs' alert rules to the daemon, ``manager.py``
says which manager runs them (the system's, or with ``--user`` a user's own), ``cli.py``
is `observer jobs`.
"""
