"""The kernel tracer's io_uring records, read back: an io_uring_sqe's (or io_uring_cqe's)
arguments, and libuv's user_data packing decoded (the evidence a note may give for "libuv")."""

from __future__ import annotations

import re

from .parse import split_args


def decode_user_data(user_data: int, opcode: str) -> dict:
    """libuv's packing of an IORING_OP_EPOLL_CTL: op | slot << 2 | fd << 32.

    Anything else (another opcode, op 0, a slot past libuv's 256-entry ring,
    a negative fd) is not libuv's layout: its fd is unknown, never guessed.
    """
    op, slot, fd = user_data & 3, (user_data >> 2) & 0x3FFFFFFF, user_data >> 32
    if opcode != "IORING_OP_EPOLL_CTL" or op == 0 or slot >= 256 or fd >= 1 << 31:
        return {"libuv": False, "opcode": opcode}
    return {"libuv": True, "opcode": opcode, "op": ("", "ADD", "DEL", "MOD")[op], "slot": slot, "fd": fd}


_KEY = re.compile(r"[a-z_]+")


def sqe_fields(args: str) -> dict | None:
    """An io_uring_sqe (or io_uring_cqe) record's arguments: `opcode` (IORING_OP_RECV), `name`
    (RECV), `user_data`, `libuv` (and its decoding of an EPOLL_CTL's user_data), `kernel` (the
    EPOLL_CTL request as the kernel prepared it), and the other `key=value` fields as written
    (`fd`, `len`, `path`, `worker`...). None when the record is not one of these."""
    parts = split_args(args)
    if len(parts) < 2 or not parts[1].startswith("user_data=0x"):
        return None
    op = parts[0]
    try:
        ud = int(parts[1][len("user_data="):], 16)
    except ValueError:
        return None
    got = decode_user_data(ud, op)
    got["user_data"] = ud
    got["name"] = op.removeprefix("IORING_OP_")
    fields = {}
    for part in parts[2:]:
        key, eq, value = part.partition("=")
        if eq and _KEY.fullmatch(key):
            fields[key] = value
        elif part.startswith("{"):
            fields["event"] = part
    if "epfd" in fields and "op" in fields and "event" in fields:
        # What the kernel prepared from the sqe: the truth where they differ.
        try:
            got["kernel"] = {"epfd": int(fields["epfd"]), "fd": int(fields["fd"]), "op": int(fields["op"]),
                             "event": fields["event"]}
        except (KeyError, ValueError):
            pass
    got["fields"] = fields
    return got
