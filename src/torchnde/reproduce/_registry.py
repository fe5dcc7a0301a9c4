"""Finding the entries: every module in ``torchnde/reproduce/entries/`` that defines ``ENTRY``."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import pkgutil

from ._entry import Entry

__all__ = ["entries", "get"]

_PACKAGE = "torchnde.reproduce.entries"


def entries() -> dict[str, Entry]:
    """Every registered entry, by name, sorted by name.

    An entry is a module of ``torchnde.reproduce.entries`` with a module-level ``ENTRY``
    (an :class:`Entry`); modules whose name starts with ``_`` are helpers and are skipped.

    Raises:
        TypeError: a module's ``ENTRY`` is not an :class:`Entry`.
        ValueError: two modules declare the same entry name.
    """
    package = importlib.import_module(_PACKAGE)
    found: dict[str, Entry] = {}
    where: dict[str, str] = {}
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("_"):
            continue
        module_name = f"{_PACKAGE}.{info.name}"
        module = importlib.import_module(module_name)
        entry = getattr(module, "ENTRY", None)
        if entry is None:
            continue
        if not isinstance(entry, Entry):
            raise TypeError(
                f"{module_name}.ENTRY must be a torchnde.reproduce.Entry, got "
                f"{type(entry).__name__}"
            )
        if entry.name in found:
            raise ValueError(
                f"two reproduce entries are named {entry.name!r}: {where[entry.name]} and "
                f"{module_name}; rename one"
            )
        found[entry.name] = entry
        where[entry.name] = module_name
    return dict(sorted(found.items()))


def get(name: str) -> Entry:
    """The entry called ``name``.

    Raises:
        ValueError: no entry has that name (the message lists the close ones and all names).
    """
    direct = _by_module_name(name)
    if direct is not None:
        return direct
    known = entries()
    if name in known:
        return known[name]
    close = difflib.get_close_matches(str(name), list(known), n=3)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "."
    raise ValueError(
        f"no reproduce entry is named {name!r}{hint} Known entries: "
        f"{', '.join(known) or '(none)'}; list them with `torchnde reproduce`"
    )


def _by_module_name(name: str) -> Entry | None:
    """The entry of module ``entries/<name with '_' for '-'>.py`` if it is called ``name``
    (found without importing the other entries), else None."""
    if not isinstance(name, str) or not name.replace("-", "").isalnum():
        return None
    module_name = f"{_PACKAGE}.{name.replace('-', '_')}"
    if importlib.util.find_spec(module_name) is None:
        return None
    entry = getattr(importlib.import_module(module_name), "ENTRY", None)
    return entry if isinstance(entry, Entry) and entry.name == name else None
