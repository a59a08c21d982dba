"""Each of poll, ppoll, select and pselect6 waits on a pipe that another
thread writes after 50 ms; then a writev of two pieces and a readv into two
buffers on the same pipe. What the kernel tracer must decode: the fds each
wait watches and reports ready, and the bytes of each iovec."""
import ctypes
import os
import select
import struct
import threading
import time

libc = ctypes.CDLL(None, use_errno=True)
SYS_select, SYS_pselect6 = 23, 270


def later(w: int) -> None:
    threading.Thread(target=lambda: (time.sleep(0.05), os.write(w, b"!"))).start()


def fdset(fd: int) -> ctypes.Array:
    return (ctypes.c_ulong * 16)(*([1 << fd] + [0] * 15))


r, w = os.pipe()

later(w)  # poll(2)
p = select.poll()
p.register(r, select.POLLIN)
p.poll(1000)
os.read(r, 1)

later(w)  # ppoll(2), through libc
pollfd = struct.pack("iHH", r, select.POLLIN, 0)
buf = ctypes.create_string_buffer(pollfd, len(pollfd))
libc.ppoll(buf, 1, ctypes.byref((ctypes.c_long * 2)(1, 0)), None)
os.read(r, 1)

later(w)  # select(2), the syscall itself (glibc's select() is pselect6 on x86_64)
libc.syscall(SYS_select, r + 1, fdset(r), None, None, ctypes.byref((ctypes.c_long * 2)(1, 0)))
os.read(r, 1)

later(w)  # pselect6(2)
libc.syscall(SYS_pselect6, r + 1, fdset(r), None, None, ctypes.byref((ctypes.c_long * 2)(1, 0)), None)
os.read(r, 1)

os.writev(w, [b"GET /vectors", b" HTTP/1.1\r\n"])
os.readv(r, [bytearray(4), bytearray(64)])
