"""Signed media links and private feed URLs across `edoor rotate-pii-key`, through the real app:
issued under the old PII_KEY, they still work once PII_KEY is the new key and PII_KEY_PREVIOUS
the old one; tampered or expired links still fail; without the previous key they stop."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx

from media.feeds import private_feed_url
from media.files import MediaSigner, media_url
from models.members import ensure_account
from models.pii import PiiVault
from models.podcasts import ensure_feed_token
from models.privacy import rotate_pii_key
from tests.conftest import TEST_PII_KEY
from tests.podcast_support import seed_podcast

NOW = dt.datetime(2026, 3, 2, 1, 0, tzinfo=dt.UTC)
BASE = "https://edoor.example"
NEW_KEY = "rotated-media-key-9876543210fedcba-9876543210"


def _local(url: str) -> str:
    assert url.startswith(BASE + "/")
    return url.removeprefix(BASE)


async def test_links_signed_before_rotation_verify_after_it(
    served: Callable[..., Any], tone: Path
) -> None:
    @contextlib.asynccontextmanager
    async def app(**keys: object) -> AsyncIterator[tuple[httpx.AsyncClient, Any, list[Any]]]:
        async with served(public_base_url=BASE, **keys) as (url, api):
            runtime = api.state.runtime
            clock = [NOW]
            runtime.processor.clock = lambda: clock[0]
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                yield http, runtime, clock

    # Before: the old key signs an episode link and a member's private feed URL.
    async with app() as (http, runtime, _):
        settings = runtime.settings
        seeded = await seed_podcast(
            runtime.sessionmaker, settings, tone, audience="civil_servant", episodes=1, now=NOW
        )
        episode = seeded.episodes[0]
        old_signer = MediaSigner.from_settings(settings)
        signed = _local(media_url(settings, episode.media_path, signer=old_signer, now=NOW))
        async with runtime.sessionmaker() as session:
            account, _ = await ensure_account(
                session, channel="simulator", external_id="cs", now=NOW
            )
            account.member.is_civil_servant = True
            token = await ensure_feed_token(
                session, member_id=account.member_id, podcast_id=seeded.podcast.id, now=NOW
            )
            await session.commit()
        feed = _local(private_feed_url(settings, old_signer, token))
        assert (await http.get(signed)).status_code == 200
        assert (await http.get(feed)).status_code == 200
        # The operator rotates: personal data is re-encrypted under the new key.
        async with runtime.sessionmaker() as session:
            await rotate_pii_key(
                session,
                old=PiiVault(TEST_PII_KEY),
                new=PiiVault(NEW_KEY, previous=[TEST_PII_KEY]),
            )
            await session.commit()

    tampered = signed.replace("sig=", "sig=x")
    longer = signed.replace("exp=", "exp=9")

    # After, with the previous key configured: what was given out still works.
    async with app(pii_key=NEW_KEY, pii_key_previous=TEST_PII_KEY) as (http, runtime, clock):
        part = await http.get(signed, headers={"Range": "bytes=0-9"})
        assert part.status_code == 206
        assert len(part.content) == 10
        response = await http.get(feed)
        assert response.status_code == 200
        assert "<enclosure" in response.text
        assert (await http.get(tampered)).status_code == 403
        assert (await http.get(longer)).status_code == 403
        # A URL of a token that was never issued (right id, other nonce) opens nothing.
        forged = MediaSigner.from_settings(runtime.settings).feed_token(token.id, "0" * 32)
        assert (await http.get(f"/feeds/private/{forged}.xml")).status_code == 404
        # New links are signed with the new key, and work too.
        new_signer = MediaSigner.from_settings(runtime.settings)
        fresh = _local(media_url(runtime.settings, episode.media_path, signer=new_signer, now=NOW))
        assert fresh != signed
        assert (await http.get(fresh)).status_code == 200
        # Expiry holds whichever key signed the link.
        clock[0] = NOW + dt.timedelta(days=7, seconds=1)
        assert (await http.get(signed)).status_code == 403

    # Once the previous key is dropped, links of the old key stop; the new key's still work.
    async with app(pii_key=NEW_KEY) as (http, _, _):
        assert (await http.get(signed)).status_code == 403
        assert (await http.get(feed)).status_code == 404
        assert (await http.get(fresh)).status_code == 200
