"""observer: makes every scheduled job observable without changing it."""

__version__ = "0.1.0"
