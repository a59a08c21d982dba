"""A user's own asyncio HTTP/1.1 server, keep-alive, written the way people write one with
asyncio streams (no framework): what `trace -- CMD --port P --load ...` is tried on.
Usage: own_server.py PORT

Routes: /        a short answer (socket I/O only)
        /block   time.sleep(0.2) in the handler: it holds the loop
        /pool    time.sleep(0.1) on the default executor's thread: the loop stays free
        /echo    the request's body back (POST, with a Content-Length)
"""
import asyncio
import sys
import time


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while head := await reader.readuntil(b"\r\n\r\n"):
            method, path = head.split(b" ", 2)[:2]
            length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), 0)
            body = await reader.readexactly(length) if length else b""
            if path == b"/block":
                time.sleep(0.2)
                answer = b"slept 200 ms on the loop\n"
            elif path == b"/pool":
                await asyncio.to_thread(time.sleep, 0.1)
                answer = b"slept 100 ms on a pool thread\n"
            elif path == b"/echo":
                answer = method + b" " + body
            else:
                answer = b"hello\n"
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client closed
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    async with server:
        await server.serve_forever()


try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
