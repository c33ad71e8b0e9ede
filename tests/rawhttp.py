"""A raw HTTP/1.1 server on 127.0.0.1 for tests of what goes over the wire (the gateway transport, event
deliveries): it records every request and connection, and a handler decides each answer, or none."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

# head, body, reader, writer -> whether to keep the connection for another request
Handler = Callable[[bytes, bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[bool]]


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.requests: list[tuple[bytes, bytes]] = []  # (head, body)
        self.connections = 0
        self._open: dict[asyncio.Task[None], asyncio.StreamWriter] = {}

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._open[task] = writer
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                body = await reader.readexactly(length)
                self.requests.append((head, body))
                if not await self.handler(head, body, reader, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._open.pop(task, None)

    async def close(self) -> None:
        """Hang up the connections still open and wait for their handlers, so none outlives the test."""
        for writer in self._open.values():
            writer.close()
        await asyncio.gather(*self._open, return_exceptions=True)


@asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[tuple[RawServer, str]]:
    """The server listening on a free loopback port, and its base URL."""
    raw = RawServer(handler)
    server = await asyncio.start_server(raw.serve, "127.0.0.1", 0)
    try:
        yield raw, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await raw.close()


def answer(status: int, body: bytes = b"", *headers: str) -> Handler:
    """Answers every request with `status`, `body` and the header lines given; keeps the connection."""
    async def handler(head: bytes, request_body: bytes, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        extra = "".join(f"{header}\r\n" for header in headers)
        writer.write(f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode() + body)
        await writer.drain()
        return True

    return handler


async def silent(head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Never answers: waits until the client gives up and closes."""
    await reader.read()
    return False


async def hang_up(head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
    """Reads the request, then closes without a word."""
    return False
