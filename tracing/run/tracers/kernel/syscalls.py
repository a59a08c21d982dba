"""x86_64 syscall numbers of the story's calls (the kernel tracer sees numbers, not names)."""

# The ABI does not change; other architectures number them differently.
NR = {"read": 0, "write": 1, "open": 2, "close": 3, "poll": 7, "pread64": 17, "readv": 19,
      "writev": 20, "select": 23, "dup": 32, "dup2": 33, "socket": 41, "connect": 42, "accept": 43,
      "sendto": 44, "recvfrom": 45, "sendmsg": 46, "recvmsg": 47, "shutdown": 48, "bind": 49,
      "listen": 50, "socketpair": 53, "clone": 56, "fork": 57, "vfork": 58, "execve": 59,
      "epoll_create": 213, "exit_group": 231, "epoll_wait": 232, "epoll_ctl": 233,
      "openat": 257, "pselect6": 270, "ppoll": 271, "epoll_pwait": 281, "timerfd_create": 283,
      "timerfd_settime": 286, "accept4": 288, "signalfd4": 289, "eventfd2": 290,
      "epoll_create1": 291, "dup3": 292, "pipe2": 293, "io_uring_setup": 425,
      "io_uring_enter": 426, "clone3": 435, "epoll_pwait2": 441}
NAME = {v: k for k, v in NR.items()}
