"""The session-wide guard (tests/conftest.py) stops any connection outside loopback."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from tests.conftest import OutsideLoopback, fail_if_outside, is_loopback

# TEST-NET-1 (RFC 5737): never routed, so even a guard that let it through would not reach
# anyone; the guard must refuse it before the kernel is asked.
OUTSIDE = "192.0.2.1"


def test_a_plain_socket_may_not_leave_loopback(outside_attempts: list[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        with pytest.raises(OutsideLoopback):
            sock.connect((OUTSIDE, 443))
        with pytest.raises(OutsideLoopback):
            sock.connect_ex((OUTSIDE, 443))
    assert outside_attempts == [repr((OUTSIDE, 443))] * 2
    outside_attempts.clear()


async def test_asyncio_and_httpx_may_not_leave_loopback(outside_attempts: list[str]) -> None:
    with pytest.raises(OSError, match="outside loopback"):
        await asyncio.wait_for(asyncio.open_connection(OUTSIDE, 443), 5)
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"https://{OUTSIDE}/")
    assert outside_attempts == [repr((OUTSIDE, 443))] * 2
    outside_attempts.clear()


def test_a_swallowed_attempt_still_fails_the_test(outside_attempts: list[str]) -> None:
    with socket.socket() as sock, pytest.raises(OSError, match="outside loopback"):
        sock.connect((OUTSIDE, 80))  # code under test that catches OSError and carries on
    with pytest.raises(pytest.fail.Exception, match="outside loopback"):
        fail_if_outside()  # what the autouse fixture does at teardown
    assert outside_attempts == []


async def _hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.close()
    await writer.wait_closed()


async def _connect_and_close(opened: object) -> None:
    _, writer = await opened  # type: ignore[misc]
    writer.close()
    await writer.wait_closed()


async def test_loopback_and_unix_sockets_are_allowed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    server = await asyncio.start_server(_hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await _connect_and_close(asyncio.open_connection("127.0.0.1", port))
        await _connect_and_close(asyncio.open_connection("localhost", port))
    path = str(tmp_path / "s.sock")
    unix = await asyncio.start_unix_server(_hang_up, path)
    async with unix:
        await _connect_and_close(asyncio.open_unix_connection(path))


def test_what_counts_as_loopback() -> None:
    for host in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1", "localhost"):
        assert is_loopback(socket.AF_INET6, (host, 80)), host
    for host in ("10.0.0.1", "192.0.2.1", "2001:db8::1", "::ffff:8.8.8.8", "api.line.me"):
        assert not is_loopback(socket.AF_INET, (host, 80)), host
