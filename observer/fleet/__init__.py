"""The fleet: many hosts' runs in one database (docs/fleet.md)."""
