"""observer from the shell: completion scripts for bash, zsh and fish and the man page, both
generated from the argument parser (spec.py), and the unit names completion offers (units.py)."""
