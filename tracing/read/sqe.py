"""The kernel tracer's io_uring_sqe records, read back: their arguments, and libuv's
user_data packing decoded (the evidence a note may give for "libuv")."""

from __future__ import annotations

import re


def decode_user_data(user_data: int, opcode: str) -> dict:
    """libuv's packing of an IORING_OP_EPOLL_CTL: op | slot << 2 | fd << 32.

    Anything else (another opcode, op 0, a slot past libuv's 256-entry ring,
    a negative fd) is not libuv's layout: its fd is unknown, never guessed.
    """
    op, slot, fd = user_data & 3, (user_data >> 2) & 0x3FFFFFFF, user_data >> 32
    if opcode != "IORING_OP_EPOLL_CTL" or op == 0 or slot >= 256 or fd >= 1 << 31:
        return {"libuv": False, "opcode": opcode}
    return {"libuv": True, "opcode": opcode, "op": ("", "ADD", "DEL", "MOD")[op], "slot": slot, "fd": fd}


_SQE = re.compile(r"^(IORING_OP_\w+|\d+), user_data=(0x[0-9a-f]+)"
                  r"(?:, epfd=(-?\d+), fd=(-?\d+), op=(\d+), (\{.*\}))?$", re.S)


def sqe_fields(args: str) -> dict | None:
    """An io_uring_sqe record's arguments, with libuv's user_data decoded."""
    m = _SQE.match(args)
    if m is None:
        return None
    got = decode_user_data(int(m.group(2), 16), m.group(1))
    got["user_data"] = int(m.group(2), 16)
    if m.group(3) is not None:
        # What the kernel prepared from the sqe: the truth where they differ.
        got["kernel"] = {"epfd": int(m.group(3)), "fd": int(m.group(4)), "op": int(m.group(5)),
                         "event": m.group(6)}
    return got
