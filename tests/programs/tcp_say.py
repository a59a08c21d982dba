"""A raw TCP client: send TEXT to 127.0.0.1:PORT, print what comes back, exit 1 unless it is
TEXT again (an echo). Usage: tcp_say.py PORT TEXT"""
import socket
import sys

text = sys.argv[2].encode() + b"\n"
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as s:
    s.sendall(text)
    got = b""
    while len(got) < len(text) and (chunk := s.recv(4096)):
        got += chunk
print(got.decode(errors="replace"), end="")
sys.exit(0 if got == text else 1)
