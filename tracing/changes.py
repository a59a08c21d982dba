"""A count of every change to the model, so a verdict can be reused while it stands still.

A server under load repeats itself: the same read of the same client, the
same write of the same answer, line after line. A handler's verdict depends
only on the call and on the model, so while no change has been made since a
verdict was worked out, an identical call gets the same verdict, and the
annotator can reuse it instead of working it out again.

That holds only if every change counts. The model is built from the
containers below (and `Tracked` records), which count each change as it is
made: nobody has to remember to say "changed". `count()` is the number so far.
"""

from __future__ import annotations

made = [0]


def count() -> int:
    return made[0]


class Tracked:
    """A record (dataclass) whose attribute writes count as changes."""

    __slots__ = ()

    def __setattr__(self, name: str, value) -> None:
        made[0] += 1
        object.__setattr__(self, name, value)


class Dict(dict):
    """A dict whose changes count. Reads are dict's own."""

    __slots__ = ()

    def __setitem__(self, key, value) -> None:
        made[0] += 1
        dict.__setitem__(self, key, value)

    def __delitem__(self, key) -> None:
        made[0] += 1
        dict.__delitem__(self, key)

    def pop(self, key, *default):
        if key in self:
            made[0] += 1
        return dict.pop(self, key, *default)

    def popitem(self):
        made[0] += 1
        return dict.popitem(self)

    def setdefault(self, key, default=None):
        if key not in self:
            made[0] += 1
        return dict.setdefault(self, key, default)

    def update(self, *args, **kwargs) -> None:
        made[0] += 1
        dict.update(self, *args, **kwargs)

    def clear(self) -> None:
        made[0] += 1
        dict.clear(self)

    def __ior__(self, other):
        made[0] += 1
        return dict.__ior__(self, other)


class Set(set):
    """A set whose changes count. Reads (and `in`) are set's own."""

    __slots__ = ()

    def add(self, item) -> None:
        if item not in self:
            made[0] += 1
            set.add(self, item)

    def discard(self, item) -> None:
        if item in self:
            made[0] += 1
            set.discard(self, item)

    def remove(self, item) -> None:
        made[0] += 1
        set.remove(self, item)

    def pop(self):
        made[0] += 1
        return set.pop(self)

    def clear(self) -> None:
        made[0] += 1
        set.clear(self)

    def update(self, *others) -> None:
        made[0] += 1
        set.update(self, *others)

    def difference_update(self, *others) -> None:
        made[0] += 1
        set.difference_update(self, *others)

    def intersection_update(self, *others) -> None:
        made[0] += 1
        set.intersection_update(self, *others)

    def symmetric_difference_update(self, other) -> None:
        made[0] += 1
        set.symmetric_difference_update(self, other)

    def __ior__(self, other):
        made[0] += 1
        return set.__ior__(self, other)

    def __iand__(self, other):
        made[0] += 1
        return set.__iand__(self, other)

    def __isub__(self, other):
        made[0] += 1
        return set.__isub__(self, other)

    def __ixor__(self, other):
        made[0] += 1
        return set.__ixor__(self, other)


class List(list):
    """A list whose changes count."""

    __slots__ = ()

    def append(self, item) -> None:
        made[0] += 1
        list.append(self, item)

    def extend(self, items) -> None:
        made[0] += 1
        list.extend(self, items)

    def insert(self, i, item) -> None:
        made[0] += 1
        list.insert(self, i, item)

    def pop(self, *i):
        made[0] += 1
        return list.pop(self, *i)

    def remove(self, item) -> None:
        made[0] += 1
        list.remove(self, item)

    def clear(self) -> None:
        made[0] += 1
        list.clear(self)

    def sort(self, *args, **kwargs) -> None:
        made[0] += 1
        list.sort(self, *args, **kwargs)

    def reverse(self) -> None:
        made[0] += 1
        list.reverse(self)

    def __setitem__(self, i, value) -> None:
        made[0] += 1
        list.__setitem__(self, i, value)

    def __delitem__(self, i) -> None:
        made[0] += 1
        list.__delitem__(self, i)

    def __iadd__(self, other):
        made[0] += 1
        return list.__iadd__(self, other)

    def __imul__(self, n):
        made[0] += 1
        return list.__imul__(self, n)


TRACKED = (Tracked, Dict, Set, List, frozenset, tuple, str, int, float, bool, type(None))


def untracked(obj, path: str = "model", seen: set | None = None) -> list[str]:
    """Where under `obj` a mutable value would change without counting (for the tests)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if not isinstance(obj, TRACKED):
        return [f"{path}: {type(obj).__name__}"]
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += untracked(v, f"{path}[{k!r}]", seen)
    elif isinstance(obj, (set, frozenset, list, tuple)):
        for i, v in enumerate(obj):
            out += untracked(v, f"{path}[{i}]", seen)
    elif isinstance(obj, Tracked):
        for name, v in vars(obj).items():
            if name not in getattr(obj, "PER_LINE", ()):
                out += untracked(v, f"{path}.{name}", seen)
    return out
