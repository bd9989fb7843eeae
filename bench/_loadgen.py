"""A light HTTP/1.1 load generator for the benchmarks: keep-alive connections, nothing else.

The benchmarks run the load on the same two cores as the system under test, so the client must
cost little: httpx spends about 5 ms of CPU per request here, a third of the whole budget; this
client writes a prepared request and reads the status line, the headers and a
``Content-Length`` body (all the API sends), at a few hundredths of that.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any


class Connection:
    """One keep-alive connection to ``host:port``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, f"{host}:{port}")

    async def request(self, method: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
        """Send one request with a JSON ``body`` (None: no body); its status and body."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = [f"{method} {path} HTTP/1.1", f"host: {self.host}"]
        if body is not None:
            head.append("content-type: application/json")
        head += [f"{name}: {value}" for name, value in headers.items()]
        head.append(f"content-length: {len(payload)}")
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        status_line = await self.reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        length = 0
        while (line := await self.reader.readuntil(b"\r\n")) != b"\r\n":
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


async def post_many(
    host: str, port: int, path: str, body: Any, headers: dict[str, str], *, n: int, k: int, rate: float = 0
) -> list[tuple[int, bytes, float]]:
    """POST ``body`` to ``path`` ``n`` times over ``k`` keep-alive connections; every (status, body,
    the wall-clock time the request was sent).

    ``rate`` 0: each connection sends its next request as soon as the last is answered (a closed
    loop: as fast as the server answers). Otherwise request ``i`` leaves no earlier than ``i /
    rate`` seconds after the first (an offered load of ``rate`` per second, ``k`` in flight at most).
    """
    results: list[tuple[int, bytes, float]] = []
    remaining = iter(range(n))
    began = time.perf_counter()

    async def loop() -> None:
        connection = await Connection.open(host, port)
        try:
            for i in remaining:
                if rate and (delay := began + i / rate - time.perf_counter()) > 0:
                    await asyncio.sleep(delay)
                sent = time.time()
                results.append((*await connection.request("POST", path, body, headers), sent))
        finally:
            connection.close()

    await asyncio.gather(*(loop() for _ in range(min(k, n))))
    return results
