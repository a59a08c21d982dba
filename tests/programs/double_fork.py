"""A daemon's start: fork, setsid, fork again, and the first two exit, so the
third runs on under PID 1 in a session of its own. It prints its PID and
sleeps (a test stops it, by that PID, if the tracer did not)."""
import os
import sys
import time

if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        print(f"daemon PID {os.getpid()}", flush=True)
        time.sleep(float(sys.argv[1]) if len(sys.argv) > 1 else 37)
        os._exit(0)
    os._exit(0)
os.wait()
time.sleep(0.3)  # the daemon has printed its PID
