# SPDX-FileCopyrightText: 2026 capsnap developers <capsnap@example.org>
# SPDX-License-Identifier: GPL-2.0-or-later
"""`NamedTuple` without importing typing.

typing (and the re, enum and contextlib it pulls in) costs a package-manager
hook about a third of its time before it does anything, and capsnap uses it
for one thing at run time: named tuples.  Type checkers see typing's own
NamedTuple; at run time a class body with annotated fields becomes a
collections.namedtuple with the same fields, defaults, methods and
docstring, as typing would make it.

Modules that care about start-up write `TYPE_CHECKING = False` and
`if TYPE_CHECKING:` around typing-only imports: mypy treats any name
TYPE_CHECKING as true.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:
    import collections

    _SKIP = frozenset(("__annotations__", "__module__", "__qualname__", "__dict__",
                       "__weakref__", "__orig_bases__"))

    class _NamedTupleMeta(type):
        def __new__(mcls, name, bases, namespace):
            fields = list(namespace.get("__annotations__", {}))
            defaults = []
            for field in fields:
                if field in namespace:
                    defaults.append(namespace[field])
                elif defaults:
                    raise TypeError(f"{name}: field {field} without a default follows "
                                    "fields with one")
            cls = collections.namedtuple(name, fields, defaults=defaults,
                                         module=namespace.get("__module__"))
            for key, value in namespace.items():
                if key not in _SKIP and key not in fields:
                    setattr(cls, key, value)
            cls.__annotations__ = dict(namespace.get("__annotations__", {}))
            return cls

    # The base itself is made without running the metaclass: it has no fields.
    NamedTuple = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})
