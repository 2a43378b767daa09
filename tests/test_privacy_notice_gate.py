"""The listening notice as the receive layer's gate (`bot.notice.ListeningNotice`): who it covers, in which
channel, after a move, for a member who joins later; and what the text says for the server's settings."""

from __future__ import annotations

import pytest

from bot.notice import ListeningNotice, notice_text
from simulator.join_command import TextChannel


VOICE_A, VOICE_B, ALICE, BOB, CHEN = 11, 12, 101, 102, 103


@pytest.mark.asyncio
async def test_covers_only_who_was_there_in_that_channel() -> None:
    channel = TextChannel()
    notice = ListeningNotice(channel, repost_s=60.0)
    assert not notice.covers(ALICE)  # nothing given yet: nobody is heard
    assert await notice.post("notice", VOICE_A, [ALICE, BOB])
    assert notice.covers(ALICE) and notice.covers(BOB) and not notice.covers(CHEN)
    assert notice.recent(VOICE_A) and not notice.recent(VOICE_B)
    notice.cover(CHEN)  # joined while the notice was recent
    assert notice.covers(CHEN)
    notice.moved(VOICE_B)  # the bot was moved: no one there is heard before the notice was given there
    assert not notice.covers(ALICE) and not notice.covers(CHEN) and not notice.recent(VOICE_B)
    assert await notice.post("notice", VOICE_B, [BOB])
    assert notice.covers(BOB) and not notice.covers(ALICE)
    assert [text for _t, text in channel.messages] == ["notice", "notice"]


@pytest.mark.asyncio
async def test_a_post_that_fails_covers_no_one() -> None:
    class Refusing(TextChannel):
        async def send(self, content: str, **_kwargs: object) -> None:
            raise PermissionError("Missing Permissions")

    notice = ListeningNotice(Refusing())
    assert not await notice.post("notice", VOICE_A, [ALICE])
    assert not notice.covers(ALICE) and not notice.covers_anyone()
    notice.given(VOICE_A, [ALICE], spoken=True)  # said out loud instead
    assert notice.covers(ALICE) and notice.spoken == 1


def test_the_text_says_what_is_kept_for_how_long_who_hears_it_and_captions() -> None:
    text = notice_text("Juniper", "#voice", memory_on=True, retention_days=90, captions_on=True)
    assert "90 days" in text and "no audio and no transcript" in text and "others in that call can hear" in text
    assert "Captions are on" in text and "/privacy optout" in text and "/memory forget" in text
    speaker = notice_text("Juniper", "#voice", memory_on=True, recall="speaker")
    assert "only when it answers you" in speaker
    off = notice_text("Juniper", "#voice", memory_on=False)
    assert "nothing is kept" in off and "Captions" not in off
    unknown = notice_text("Juniper", "#voice", memory_on=False, known=False)
    assert "not listening yet" in unknown and "/privacy optout" in unknown
