"""A count of every change to the model, so a verdict can be reused while it stands still.

A server under load repeats itself: the same read of the same client, the
same write of the same answer, line after line. A handler's verdict depends
only on the call and on the model, so while no change has been made since a
verdict was worked out, an identical call gets the same verdict, and the
annotator can reuse it instead of working it out again.

That holds only if every change counts. The model is built from the
containers below (and `Tracked` records), which count each change as it is
made: nobody has to remember to say "changed". `count()` is the number so far
(`made[0]`, for a caller that asks on every line).
"""

from __future__ import annotations

# One count for every model in the process. `+= 1` is not atomic: one annotator runs
# per process (per thread at most), which is all this holds for.
made = [0]


def count() -> int:
    return made[0]


class Tracked:
    """A record (dataclass) whose attribute writes count as changes."""

    __slots__ = ()

    def __setattr__(self, name: str, value) -> None:
        made[0] += 1
        object.__setattr__(self, name, value)


def _counting(*names: str):
    """Class decorator: the base type's methods `names` each count a change before they run."""
    def wrap(cls: type) -> type:
        base = cls.__bases__[0]
        for name in names:
            method = getattr(base, name)

            def counted(self, *args, _method=method, **kwargs):
                made[0] += 1
                return _method(self, *args, **kwargs)
            counted.__name__ = name
            setattr(cls, name, counted)
        return cls
    return wrap


@_counting("__setitem__", "__delitem__", "popitem", "update", "clear", "__ior__")
class Dict(dict):
    """A dict whose changes count. Reads are dict's own."""

    __slots__ = ()

    # These two count only when they change something: they are asked often
    # of keys that are there already.
    def pop(self, key, *default):
        if key in self:
            made[0] += 1
        return dict.pop(self, key, *default)

    def setdefault(self, key, default=None):
        if key not in self:
            made[0] += 1
        return dict.setdefault(self, key, default)


@_counting("remove", "pop", "clear", "update", "difference_update", "intersection_update",
           "symmetric_difference_update", "__ior__", "__iand__", "__isub__", "__ixor__")
class Set(set):
    """A set whose changes count. Reads (and `in`) are set's own."""

    __slots__ = ()

    # Every epoll wait adds its thread again: count only a new member.
    def add(self, item) -> None:
        if item not in self:
            made[0] += 1
            set.add(self, item)

    def discard(self, item) -> None:
        if item in self:
            made[0] += 1
            set.discard(self, item)


@_counting("append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse",
           "__setitem__", "__delitem__", "__iadd__", "__imul__")
class List(list):
    """A list whose changes count."""

    __slots__ = ()


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
