"""Requests are bounded before they are read: a declared or streamed body over its route's
limit gets 413, a stalled body 408, headers that never finish a closed connection, and the
real server process (`edoor serve`) keeps a flat memory under the attack."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from tests.serve_support import MiB, edoor_serve, peak_rss


async def _exchange(
    host: str, port: int, head: bytes, body_chunks: int = 0, chunk: bytes = b""
) -> bytes:
    """Send `head`, then up to `body_chunks` chunked-encoding chunks of `chunk` (stopping when
    the server answers or closes), and return what the server said."""
    reader, writer = await asyncio.open_connection(host, port)
    answer = b""
    try:
        writer.write(head)
        await writer.drain()
        frame = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"
        for _ in range(body_chunks):
            try:
                answer = await asyncio.wait_for(reader.read(4096), timeout=0.0001)
            except TimeoutError:
                answer = b""
            if answer or reader.at_eof():
                break
            try:
                writer.write(frame)
                await writer.drain()
            except (ConnectionError, OSError):
                break
        if not answer:
            answer = await asyncio.wait_for(reader.read(4096), timeout=10)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()
    return answer


def _head(path: str, *headers: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_oversized_bodies_are_refused_unread_and_memory_stays_flat(tmp_path: Path) -> None:
    async with edoor_serve(tmp_path) as (host, port, pid):
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            small = await http.post("/webhooks/line", content=b'{"events":[]}')
            assert small.status_code == 401  # within the limit: the signature is checked
        before = peak_rss(pid)

        # A declared gigabyte is refused from its Content-Length alone.
        answer = await _exchange(host, port, _head("/webhooks/line", "Content-Length: 1073741824"))
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        # A bad Content-Length is a 400, not a 500.
        answer = await _exchange(host, port, _head("/webhooks/line", "Content-Length: 12abc"))
        assert answer.startswith(b"HTTP/1.1 400"), answer[:80]
        # Chunked bodies are counted as they arrive: 64 MiB offered, refused after ~1 MiB
        # (webhooks) and ~20 MiB (imports), never held in memory.
        for path in ("/webhooks/line", "/webhooks/telegram", "/admin/api/courses/import"):
            answer = await _exchange(
                host,
                port,
                _head(path, "Transfer-Encoding: chunked", "Authorization: Bearer x"),
                body_chunks=1024,
                chunk=b"x" * (64 * 1024),
            )
            assert answer.startswith((b"HTTP/1.1 413", b"HTTP/1.1 401", b"HTTP/1.1 404")), (
                path,
                answer[:80],
            )
        after = peak_rss(pid)
        assert after - before < 24 * MiB, f"peak memory grew by {(after - before) / MiB:.1f} MiB"

        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200


async def test_slow_clients_are_cut_off(tmp_path: Path) -> None:
    async with edoor_serve(tmp_path) as (host, port, _):
        # Headers that never finish: the connection is closed after the header timeout (1 s).
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"POST /webhooks/line HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        await writer.drain()
        closed = await asyncio.wait_for(reader.read(), timeout=5)
        assert closed == b""  # closed without a word, within the timeout
        writer.close()
        # A body that stalls: 408 after the body timeout (1 s).
        answer = await asyncio.wait_for(
            _exchange(host, port, _head("/webhooks/line", "Content-Length: 100") + b"0123456789"),
            timeout=8,
        )
        assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
        # An idle kept-alive connection is not a way around it either.
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            assert (await http.get("/healthz")).status_code == 200


async def test_the_app_refuses_bodies_over_the_limit_in_process(
    served,  # type: ignore[no-untyped-def]
) -> None:
    # Just over the limit, so that the refused body still fits the socket buffers and the
    # client reads the 413 (a far larger one is covered by the raw-socket test above).
    size = MiB + 1
    async with served() as (url, _), httpx.AsyncClient(base_url=url, timeout=30) as http:
        response = await http.post("/simulator/api/send", content=b"x" * size)
        assert response.status_code == 413

        async def stream() -> AsyncIterator[bytes]:
            for _ in range(size // 65536 + 1):
                yield b"x" * 65536

        chunked = await http.post("/simulator/api/send", content=stream())
        assert chunked.status_code == 413
        ok = await http.post("/simulator/api/send", json={"user": "a", "text": "help"})
        assert ok.status_code == 200


async def test_campaign_files_and_codes_may_be_as_large_as_an_import(
    served,  # type: ignore[no-untyped-def]
) -> None:
    """A codes CSV of 70,000 vouchers (over 1 MiB) is an import, not a webhook: the body
    limit of the route is MAX_IMPORT_BYTES, while a broadcast image stays within 1 MiB."""
    import yaml

    from tests.campaign_support import campaign_file

    token = "bounded-requests-admin-token-0123456789"
    auth = {"authorization": f"Bearer {token}"}
    codes = "code\n" + "".join(f"VOUCHER-{i:08d}\n" for i in range(70_000))
    assert len(codes) > MiB
    async with (
        served(admin_token=token) as (url, _),
        httpx.AsyncClient(base_url=url, timeout=120) as http,
    ):
        doc = campaign_file(prize={"generate": None})
        made = await http.post(
            "/admin/api/campaigns", content=yaml.safe_dump(doc, allow_unicode=True), headers=auth
        )
        assert made.status_code == 201, made.text
        loaded = await http.post(
            f"/admin/api/campaigns/{doc['slug']}/codes", content=codes, headers=auth
        )
        assert loaded.status_code == 200, loaded.text[:200]
        shown = (await http.get(f"/admin/api/campaigns/{doc['slug']}", headers=auth)).json()
        assert shown["stock"] == 70_000
        image = await http.post(
            "/admin/api/broadcasts/images",
            content=b"\x89PNG\r\n\x1a\n" + b"x" * (2 * MiB),
            headers={**auth, "content-type": "image/png"},
        )
        assert image.status_code == 413
