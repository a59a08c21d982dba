"""A small asyncio program, the kind a user brings to `trace -- CMD`: it reads
a file through a thread (asyncio.to_thread), resolves localhost (getaddrinfo
on the loop's default executor), and exits. Both finish on pool threads that
wake the loop through its self-pipe."""

import asyncio
import socket
import sys


async def main(path: str) -> None:
    loop = asyncio.get_running_loop()
    text = await asyncio.to_thread(lambda: open(path).read())
    addrs = await loop.getaddrinfo("localhost", 80, type=socket.SOCK_STREAM)
    print(f"read {len(text)} bytes; localhost is {addrs[0][4][0]}")


asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "/etc/hostname"))
