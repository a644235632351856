"""Records without the import cost of dataclasses (it imports inspect) and typing: what every
reading command's start would pay before reading a row (tests/unit/test_startup_imports.py).

``NamedTuple`` is typing's as mypy reads it, made at run time by ``collections.namedtuple``:
an immutable record, changed with ``_replace``. ``Mutable`` gives a class with ``__slots__``
the equality and repr a dataclass would have.
"""

from __future__ import annotations

from collections import namedtuple

__all__ = ["Mutable", "NamedTuple"]

# typing.TYPE_CHECKING would import typing; mypy takes this one as true.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NamedTuple, Self
else:
    # What the class body holds besides its fields and what they are given.
    _OWN = frozenset({"__module__", "__qualname__", "__annotations__"})

    class _Maker(type):
        """Makes each subclass of NamedTuple a collections.namedtuple, as typing does."""

        def __new__(cls, name, bases, namespace):
            if not bases:  # NamedTuple itself
                return super().__new__(cls, name, bases, namespace)
            fields = tuple(namespace.get("__annotations__", {}))
            defaults = [namespace[field] for field in fields if field in namespace]
            made = namedtuple(name, fields, defaults=defaults, module=namespace["__module__"])
            made.__qualname__ = namespace["__qualname__"]
            for key, value in namespace.items():
                if key not in fields and key not in _OWN:
                    setattr(made, key, value)
            return made

    class NamedTuple(metaclass=_Maker):
        """Base of an immutable record: ``class Run(NamedTuple): unit: str ...``."""


class Mutable:
    """A mutable record's equality and repr, from its ``__slots__``."""

    __slots__: tuple[str, ...] = ()

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, Mutable)
        return self._values() == other._values()

    # Unhashable, as a mutable dataclass.
    __hash__ = None  # type: ignore[assignment]

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` (its class takes each field by name)."""
        return type(self)(**{**dict(zip(self.__slots__, self._values(), strict=True)), **changes})

    def __repr__(self) -> str:
        values = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({values})"
