"""Name -> method registries: each network type, gradient combiner and agent registers itself,
with its options dataclass, in the file that defines it.

The three registries are :data:`mtrl.nn.NETWORKS` (``@register_network``),
:data:`mtrl.optim.COMBINERS` (``@register_combiner``) and :data:`mtrl.agents.AGENT_CLASSES`
(a subclass of :class:`~mtrl.agents.base.Agent` with a ``name`` and, optionally, ``options``).
:mod:`mtrl.config` assembles its schema from them: an options dataclass registered under
``paco`` becomes the section ``agent.network.paco``, one under ``cagrad`` the section
``agent.combiners.cagrad``, one under ``distral`` the section ``agent.distral``.

Order is registration order, fixed: each package's ``__init__`` imports its built-in method
modules once, in a written order (a module registers its methods in the order it defines them),
then every other module of the package, sorted by name (:func:`import_submodules`), so that a
new method file registers itself without an edit anywhere else.

An options dataclass may define ``validate(self, key: str) -> None``: :func:`mtrl.config.validate`
calls it with the section's dotted key (``"agent.distral"``) and it raises
:class:`~mtrl.errors.MtrlError` with a one-line message that names the key.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Callable, Generic, Optional, TypeVar

from mtrl.errors import MtrlError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """An ordered, read-only mapping name -> class (or factory), plus each entry's options
    dataclass (``None``: no options section). Entries are added by :meth:`register`.

    Args:
        kind: what an entry is, for messages (``"network type"``, ``"gradient combiner"``).
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._options: dict[str, Optional[type]] = {}
        self.version = 0  # bumped by every change (the config schema caches on it)

    def register(self, name: str, options: Optional[type] = None) -> Callable[[T], T]:
        """A decorator that registers its argument under ``name`` with ``options`` (a
        dataclass whose defaults match the constructor's keyword arguments) and returns it
        unchanged. Registering a name twice is an error (re-importing the same definition,
        e.g. with :func:`importlib.reload`, replaces it)."""
        if options is not None and not (dataclasses.is_dataclass(options)
                                        and isinstance(options, type)):
            raise TypeError(f"{self.kind} '{name}': options must be a dataclass, got {options!r}")
        if not name.isidentifier():
            raise ValueError(f"{self.kind} name '{name}' must be a Python identifier "
                             "(it names a config section)")

        def decorator(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old is not obj and _qualified(old) != _qualified(obj):
                raise ValueError(f"{self.kind} '{name}' is already registered "
                                 f"({_qualified(old)})")
            self._entries[name] = obj
            self._options[name] = options
            self.version += 1
            return obj

        return decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a method of their own clean up with this)."""
        self.lookup(name)
        del self._entries[name], self._options[name]
        self.version += 1

    def lookup(self, name: str) -> T:
        """The entry of ``name``; a one-line :class:`MtrlError` listing the choices if none."""
        try:
            return self._entries[name]
        except KeyError:
            raise MtrlError(
                f"unknown {self.kind} '{name}' (choose from {', '.join(self._entries)})"
            ) from None

    def options(self, name: str) -> Optional[type]:
        """The options dataclass of ``name`` (``None``: it takes no options)."""
        self.lookup(name)
        return self._options[name]

    def option_sections(self) -> dict[str, type]:
        """``name -> options dataclass`` of the entries that have options, in order."""
        return {name: cls for name, cls in self._options.items() if cls is not None}

    def __getitem__(self, name: str) -> T:
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self._entries)})"


def import_submodules(package: str, path: Iterable[str]) -> None:
    """Import every module of ``package`` (its ``__name__`` and ``__path__``) once, sorted by
    name: a package's ``__init__`` calls it last, so that each method module of the package
    registers itself, the new ones after those its ``__init__`` imports by name."""
    for info in sorted(pkgutil.iter_modules(list(path)), key=lambda m: m.name):
        importlib.import_module(f"{package}.{info.name}")


def _qualified(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
