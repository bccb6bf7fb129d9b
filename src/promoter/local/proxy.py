"""The stable active address of a local blue/green rollout: a TCP proxy whose target can switch.

Like a Kubernetes Service whose selector Argo Rollouts flips, it forwards each NEW connection to the
server named in the target file (`host:port`); connections already open stay where they are until
they close. Switching is an atomic rename of that file.
Run: `python -m promoter.local.proxy PORT FILE [PORT_FILE]`.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Proxy:
    def __init__(self, target_file: Path) -> None:
        self.target_file = target_file

    def target(self) -> tuple[str, int] | None:
        try:
            host, _, port = self.target_file.read_text().strip().rpartition(":")
            return host, int(port)
        except (OSError, ValueError):
            return None

    async def handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        target = self.target()
        try:
            if target is None:
                raise ConnectionRefusedError("no active target")
            upstream_reader, upstream_writer = await asyncio.open_connection(*target)
        except OSError:
            client_writer.close()  # nothing active: refuse, as a Service without endpoints does
            return
        await asyncio.gather(_pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer))


async def serve(port: int, target_file: Path, port_file: Path | None = None) -> None:
    """Listen on `port` (0: one the OS picks) and, once listening, write the port to `port_file`."""
    proxy = Proxy(target_file)
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", port)
    if port_file is not None:
        partial = port_file.with_suffix(".partial")
        partial.write_text(str(server.sockets[0].getsockname()[1]))
        partial.replace(port_file)  # readers never see half a number
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> None:
    port, target_file = int(argv[0]), Path(argv[1])
    asyncio.run(serve(port, target_file, Path(argv[2]) if len(argv) > 2 else None))


if __name__ == "__main__":
    main(sys.argv[1:])
