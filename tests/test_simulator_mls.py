"""simulator.dave_external: the external sender's encodings, checked against davey's real MLS member side."""

from __future__ import annotations

import davey
import pytest

from simulator import dave_external as mls

CHANNEL = 987654321


def _session(uid: int, ext: mls.ExternalSender) -> davey.DaveSession:
    s = davey.DaveSession(1, uid, CHANNEL)
    s.set_external_sender(ext.package())
    return s


def _proposals(messages: list[bytes]) -> bytes:
    return mls.proposals_payload(messages)[1:]  # what discord.py hands davey (after the operation byte)


def test_varint_and_vectors():
    for n, size in [(0, 1), (63, 1), (64, 2), (16383, 2), (16384, 4), (2**30 - 1, 4)]:
        enc = mls.encode_varint(n)
        assert len(enc) == size
        assert mls.Reader(enc).varint() == n
    with pytest.raises(ValueError):
        mls.encode_varint(2**30)
    with pytest.raises(mls.MlsDecodeError):
        mls.Reader(b"\x05ab").vec()


def test_external_package_layout():
    ext = mls.ExternalSender(identity=b"voice")
    pkg = ext.package()
    r = mls.Reader(pkg)
    key = r.vec()
    assert len(key) == 65 and key[0] == 4  # uncompressed P-256 point
    assert r.u16() == mls.CREDENTIAL_BASIC and r.vec() == b"voice" and r.pos == len(pkg)


def test_group_lifecycle_with_real_davey_sessions():
    ext = mls.ExternalSender()
    gid = mls.group_id_for_channel(CHANNEL)
    bot, alice, bob = (_session(uid, ext) for uid in (1, 2, 3))

    # create: the bot commits an external Add of alice at epoch 0
    cw = bot.process_proposals(
        davey.ProposalsOperationType.append, _proposals([ext.add_proposal(gid, 0, alice.get_serialized_key_package())])
    )
    info, commit, welcome = mls.split_commit_welcome(cw.commit + cw.welcome)
    assert (commit, welcome) == (cw.commit, cw.welcome)
    assert info.epoch == 0 and info.content_type == mls.CONTENT_COMMIT and info.group_id == gid
    bot.process_commit(commit)
    alice.process_welcome(welcome)
    assert bot.ready and alice.ready and bot.epoch == alice.epoch == 1
    frame = bot.encrypt_opus(b"\x78" * 40)
    assert frame.endswith(b"\xfa\xfa")
    assert alice.decrypt(1, davey.MediaType.audio, frame) == b"\x78" * 40

    # join: alice (already in) stores the proposal, the bot commits, alice processes the commit, bob is welcomed
    props = _proposals([ext.add_proposal(gid, 1, bob.get_serialized_key_package())])
    alice.process_proposals(davey.ProposalsOperationType.append, props)
    cw = bot.process_proposals(davey.ProposalsOperationType.append, props)
    _, commit, welcome = mls.split_commit_welcome(cw.commit + cw.welcome)
    bot.process_commit(commit)
    alice.process_commit(commit)
    bob.process_welcome(welcome)
    assert bot.epoch == alice.epoch == bob.epoch == 2
    assert bot.decrypt(3, davey.MediaType.audio, bob.encrypt_opus(b"\x01\x02\x03\x04")) == b"\x01\x02\x03\x04"

    # leave: external Remove of alice's leaf, commit without a welcome
    props = _proposals([ext.remove_proposal(gid, 2, alice.own_leaf_index)])
    bob.process_proposals(davey.ProposalsOperationType.append, props)
    cw = bot.process_proposals(davey.ProposalsOperationType.append, props)
    info, commit, welcome = mls.split_commit_welcome(cw.commit)
    assert welcome is None and info.epoch == 2
    bot.process_commit(commit)
    bob.process_commit(commit)
    assert sorted(bot.get_user_ids()) == ["1", "3"]


def test_proposal_signed_by_another_sender_is_rejected():
    ext, impostor = mls.ExternalSender(), mls.ExternalSender()
    gid = mls.group_id_for_channel(CHANNEL)
    bot, alice = _session(1, ext), _session(2, ext)
    with pytest.raises(ValueError, match="InvalidSignature"):
        bot.process_proposals(
            davey.ProposalsOperationType.append,
            _proposals([impostor.add_proposal(gid, 0, alice.get_serialized_key_package())]),
        )


def test_split_rejects_non_commit():
    ext = mls.ExternalSender()
    alice = _session(2, ext)
    proposal = ext.add_proposal(mls.group_id_for_channel(CHANNEL), 0, alice.get_serialized_key_package())
    with pytest.raises(mls.MlsDecodeError):
        mls.split_commit_welcome(proposal)
    with pytest.raises(mls.MlsDecodeError):
        mls.split_commit_welcome(b"\x00\x01\x00")
