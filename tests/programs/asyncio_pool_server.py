"""A small asyncio HTTP server whose handler reads a file in the default thread pool
(asyncio.to_thread) and answers: what `trace --pid` attaches to after its pool thread
exists. Usage: asyncio_pool_server.py PORT FILE"""
import asyncio
import sys
from pathlib import Path


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        pass
    body = await asyncio.to_thread(Path(sys.argv[2]).read_bytes)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
    await writer.drain()
    writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()


try:
    asyncio.run(main())
except KeyboardInterrupt:
    pass
