"""Setting observer up: `observer install --user` (a user's own daemon) and `check-config`."""
