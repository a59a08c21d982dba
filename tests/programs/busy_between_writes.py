"""An asyncio loop whose callback writes the same line five times, computes
for 200 ms without a syscall, then writes it five times more: identical
calls, and a stall between two of them that only their times show."""
import asyncio
import os
import time


def writes(loop: asyncio.AbstractEventLoop) -> None:
    fd = os.open(os.devnull, os.O_WRONLY)
    for _ in range(5):
        os.write(fd, b"tick\n")
    began = time.monotonic()  # the vDSO: no syscall while the loop is busy
    while time.monotonic() - began < 0.2:
        pass
    for _ in range(5):
        os.write(fd, b"tick\n")
    os.close(fd)
    loop.call_later(0.05, loop.stop)


loop = asyncio.new_event_loop()
loop.call_later(0.05, writes, loop)
loop.run_forever()
loop.close()
