"""A raw TCP echo server on one epoll loop (selectors), no HTTP: what `--ready tcp` and
`--client` are for. Usage: tcp_echo.py PORT"""
import selectors
import socket
import sys

sel = selectors.DefaultSelector()
listener = socket.create_server(("127.0.0.1", int(sys.argv[1])))
listener.setblocking(False)
sel.register(listener, selectors.EVENT_READ)
try:
    while True:
        for key, _ in sel.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ)
                continue
            data = key.fileobj.recv(4096)
            if data:
                key.fileobj.sendall(data)
            else:
                sel.unregister(key.fileobj)
                key.fileobj.close()
except KeyboardInterrupt:
    pass
