"""A minimal RFC 6455 websocket client for the tests: blocking and asyncio flavours.

Just what a test needs: the opening handshake (checked), masked client frames, unmasked server
frames of any length, text/binary/ping/close. No extensions, no fragmentation on send.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import ssl
import struct

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def handshake_request(path: str, key: bytes, host: str = "127.0.0.1") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def check_handshake(head: bytes, key: bytes) -> None:
    lines = head.decode("latin-1").split("\r\n")
    if lines[0].split()[1] != "101":
        raise ConnectionError(f"no upgrade: {lines[0]!r}")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    expected = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    if headers.get("sec-websocket-accept") != expected:
        raise ConnectionError(f"bad Sec-WebSocket-Accept in {head!r}")


def frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + masked


def _length(second: int, read) -> int:
    n = second & 0x7F
    if n == 126:
        return struct.unpack("!H", read(2))[0]
    if n == 127:
        return struct.unpack("!Q", read(8))[0]
    return n


class WebSocket:
    """Blocking client over a plain socket."""

    def __init__(self, port: int, path: str = "/ws", timeout: float = 10.0,
                 tls: ssl.SSLContext | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            self.sock = tls.wrap_socket(self.sock)
        key = base64.b64encode(os.urandom(16))
        self.sock.sendall(handshake_request(path, key))
        head = b""
        while b"\r\n\r\n" not in head:
            data = self.sock.recv(1)   # byte by byte: frames may follow the head at once
            if not data:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += data
        check_handshake(head, key)

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            more = self.sock.recv(n - len(data))
            if not more:
                raise ConnectionError("connection closed in a frame")
            data += more
        return data

    def send(self, payload: bytes | str, opcode: int | None = None) -> None:
        if isinstance(payload, str):
            payload, opcode = payload.encode(), opcode or TEXT
        self.sock.sendall(frame(opcode or BINARY, payload))

    def recv_frame(self) -> tuple[int, bytes]:
        first, second = self._read(2)
        return first & 0x0F, self._read(_length(second, self._read))

    def recv(self) -> bytes:
        """The next data message's payload (pings are answered)."""
        while True:
            opcode, payload = self.recv_frame()
            if opcode == PING:
                self.sock.sendall(frame(PONG, payload))
                continue
            if opcode == CLOSE:
                raise ConnectionError(f"closed by the server: {payload!r}")
            return payload

    def close(self) -> bytes:
        """Send a close frame and return the server's close frame payload."""
        self.sock.sendall(frame(CLOSE, struct.pack("!H", 1000)))
        try:
            while True:
                opcode, payload = self.recv_frame()
                if opcode == CLOSE:
                    return payload
        finally:
            self.sock.close()


class AsyncWebSocket:
    """asyncio client, for many connections from one test thread."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int, path: str = "/ws") -> "AsyncWebSocket":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16))
        writer.write(handshake_request(path, key))
        head = await reader.readuntil(b"\r\n\r\n")
        check_handshake(head, key)
        return cls(reader, writer)

    async def send(self, payload: bytes) -> None:
        self.writer.write(frame(BINARY, payload))
        await self.writer.drain()

    async def recv(self) -> bytes:
        while True:
            first, second = await self.reader.readexactly(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(n)
            opcode = first & 0x0F
            if opcode == PING:
                self.writer.write(frame(PONG, payload))
                continue
            if opcode == CLOSE:
                raise ConnectionError(f"closed by the server: {payload!r}")
            return payload

    async def close(self) -> None:
        self.writer.write(frame(CLOSE, struct.pack("!H", 1000)))
        try:
            while True:
                first, second = await self.reader.readexactly(2)
                n = second & 0x7F
                if n == 126:
                    n = struct.unpack("!H", await self.reader.readexactly(2))[0]
                payload = await self.reader.readexactly(n)
                if first & 0x0F == CLOSE:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            self.writer.close()
