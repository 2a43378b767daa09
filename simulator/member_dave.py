"""A simulated member's DAVE client, with either of the two implementations real clients use.

* ``"davey"``: the Rust implementation discord.py's bot side uses (`davey.DaveSession`). Like discord.py, it
  switches its own sending key as soon as it processes a commit or welcome.
* ``"libdave"``: Discord's own C++ library, as its desktop and mobile clients run it (PyPI ``dave.py``, import
  ``dave``): an MLS `dave.Session`, one `dave.Encryptor` for what the member sends and one `dave.Decryptor` per
  other member. It follows libdave's reference session manager: on a commit or welcome the decryptors move to the
  new epoch's keys at once (the previous keys stay valid for ``TRANSITION_EXPIRY``), and the member's own sending
  key changes only when the voice server executes the transition (op 22).

Both expose the same small interface to the loopback server and `SimMember`. Neither exposes MLS leaf indices in
the same way (libdave not at all), so the server keeps its own `LeafTable`, as Discord's voice server does.
"""

from __future__ import annotations

import datetime
from typing import Callable, Protocol

import davey

from . import dave_external as mls

IMPLEMENTATIONS = ("davey", "libdave")
TRANSITION_EXPIRY = datetime.timedelta(seconds=10)


class DaveStepError(RuntimeError):
    """A member's DAVE client refused an MLS message (commit, welcome) or a media frame."""


class MemberDave(Protocol):
    impl: str

    @property
    def ready(self) -> bool:
        """In an established group with a key to send with."""

    def new_group(self, version: int, channel_id: int, external_sender: bytes) -> bytes:
        """Start over for a new group; returns the member's serialized key package."""

    def process_proposals(self, payload: bytes, recognized: set[int]) -> tuple[bytes, bytes | None] | None:
        """An op 27 payload (operation byte included): (commit, welcome) when this member commits them."""

    def process_commit(self, commit: bytes) -> None: ...

    def process_welcome(self, welcome: bytes, recognized: set[int]) -> None: ...

    def execute_transition(self) -> None:
        """op 22: the transition the last commit or welcome prepared takes effect."""

    def encrypt_opus(self, frame: bytes) -> bytes: ...

    def decrypt(self, from_user_id: int, frame: bytes) -> bytes: ...


def make_member_dave(impl: str, user_id: int, ssrc_of: Callable[[], int]) -> MemberDave:
    """``ssrc_of()``: the member's current SSRC (libdave's encryptor is keyed by it)."""
    if impl == "davey":
        return DaveyMember(user_id)
    if impl == "libdave":
        return LibdaveMember(user_id, ssrc_of)
    raise ValueError(f"unknown DAVE implementation {impl!r} (expected one of {', '.join(IMPLEMENTATIONS)})")


class DaveyMember:
    impl = "davey"

    def __init__(self, user_id: int) -> None:
        self.user_id = user_id
        self.session: davey.DaveSession | None = None

    @property
    def ready(self) -> bool:
        return self.session is not None and self.session.ready

    def new_group(self, version: int, channel_id: int, external_sender: bytes) -> bytes:
        if self.session is None:
            self.session = davey.DaveSession(version, self.user_id, channel_id)
        else:
            self.session.reinit(version, self.user_id, channel_id)
        self.session.set_external_sender(external_sender)
        return self.session.get_serialized_key_package()

    def process_proposals(self, payload: bytes, recognized: set[int]) -> tuple[bytes, bytes | None] | None:
        operation = {
            mls.PROPOSALS_APPEND: davey.ProposalsOperationType.append,
            mls.PROPOSALS_REVOKE: davey.ProposalsOperationType.revoke,
        }[payload[0]]
        result = self._session.process_proposals(operation, payload[1:])
        return None if result is None else (result.commit, result.welcome)

    def process_commit(self, commit: bytes) -> None:
        self._session.process_commit(commit)

    def process_welcome(self, welcome: bytes, recognized: set[int]) -> None:
        self._session.process_welcome(welcome)

    def execute_transition(self) -> None:
        pass  # davey switched its sending key when it processed the commit

    def encrypt_opus(self, frame: bytes) -> bytes:
        return self._session.encrypt_opus(frame)

    def decrypt(self, from_user_id: int, frame: bytes) -> bytes:
        return self._session.decrypt(from_user_id, davey.MediaType.audio, frame)

    @property
    def own_leaf_index(self) -> int | None:
        return self.session.own_leaf_index if self.session is not None else None

    @property
    def _session(self) -> davey.DaveSession:
        if self.session is None:
            raise DaveStepError("no DAVE session yet")
        return self.session


class LibdaveMember:
    impl = "libdave"

    def __init__(self, user_id: int, ssrc_of: Callable[[], int]) -> None:
        import dave  # PyPI dave.py: a test/simulator dependency, imported only when a libdave member exists

        self._dave = dave
        self.user_id = user_id
        self._ssrc_of = ssrc_of
        self.mls_failures: list[tuple[str, str]] = []
        self.session = dave.Session(lambda source, reason: self.mls_failures.append((source, reason)))
        self._encryptor = dave.Encryptor()
        self._decryptors: dict[int, dave.Decryptor] = {}
        self._group: set[int] = set()  # libdave's roster: it reports changes to it, across groups too
        self._pending_own_key = False

    @property
    def ready(self) -> bool:
        return self.session.has_established_group() and self._encryptor.has_key_ratchet()

    def new_group(self, version: int, channel_id: int, external_sender: bytes) -> bytes:
        self.session.init(version, channel_id, str(self.user_id))
        self.session.set_external_sender(external_sender)
        self._encryptor = self._dave.Encryptor()
        self._pending_own_key = False
        package = self.session.get_marshalled_key_package()
        if package is None:
            raise DaveStepError("libdave produced no key package")
        return package

    def process_proposals(self, payload: bytes, recognized: set[int]) -> tuple[bytes, bytes | None] | None:
        out = self.session.process_proposals(payload, {str(u) for u in recognized | {self.user_id}})
        if not out:
            return None
        _, commit, welcome = mls.split_commit_welcome(out)
        return commit, welcome

    def process_commit(self, commit: bytes) -> None:
        roster = self.session.process_commit(commit)
        if isinstance(roster, self._dave.RejectType):
            raise DaveStepError(f"libdave rejected the commit ({roster.name}): {self.mls_failures[-1:]}")
        self._update_roster(roster)

    def process_welcome(self, welcome: bytes, recognized: set[int]) -> None:
        roster = self.session.process_welcome(welcome, {str(u) for u in recognized | {self.user_id}})
        if roster is None:
            raise DaveStepError(f"libdave rejected the welcome: {self.mls_failures[-1:]}")
        self._update_roster(roster)

    def _update_roster(self, changes: dict[int, list[int]]) -> None:
        """libdave returns what changed in the roster (a member with an empty key left), for welcomes too."""
        for uid, key in changes.items():
            (self._group.add if key else self._group.discard)(int(uid))
        self._prepare_ratchets()

    def _prepare_ratchets(self) -> None:
        """What libdave's session manager does on a commit or welcome: every other member's decryptor moves to
        the new keys now (old ones stay valid a while); our own key waits for the transition's execution."""
        for uid in self._group - {self.user_id}:
            ratchet = self.session.get_key_ratchet(str(uid))
            if ratchet is None:
                continue
            decryptor = self._decryptors.get(uid)
            if decryptor is None:
                decryptor = self._decryptors[uid] = self._dave.Decryptor()
            decryptor.transition_to_key_ratchet(ratchet, TRANSITION_EXPIRY)
        for uid in set(self._decryptors) - self._group:
            del self._decryptors[uid]
        self._pending_own_key = True

    def execute_transition(self) -> None:
        if self._pending_own_key:
            self._encryptor.set_key_ratchet(self.session.get_key_ratchet(str(self.user_id)))
            self._pending_own_key = False

    def encrypt_opus(self, frame: bytes) -> bytes:
        ssrc = self._ssrc_of()
        if self._encryptor.codec_for_ssrc(ssrc) != self._dave.Codec.opus:
            self._encryptor.assign_ssrc_to_codec(ssrc, self._dave.Codec.opus)
        out = self._encryptor.encrypt(self._dave.MediaType.audio, ssrc, frame)
        if out is None:
            raise DaveStepError("libdave could not encrypt the frame")
        return out

    def decrypt(self, from_user_id: int, frame: bytes) -> bytes:
        decryptor = self._decryptors.get(from_user_id)
        if decryptor is None:
            raise DaveStepError(f"no decryptor for user {from_user_id}")
        out = decryptor.decrypt(self._dave.MediaType.audio, frame)
        if out is None:
            raise DaveStepError(f"libdave could not decrypt a frame of user {from_user_id}")
        return out


class LeafTable:
    """The MLS tree's leaves as the voice server (the external sender) follows them: who sits at which leaf.

    RFC 9420 §12.3: a commit applies its removals first (the leaf becomes blank), then its adds in order, each
    into the leftmost blank leaf (or a new one at the right).
    """

    def __init__(self) -> None:
        self._leaves: list[int | None] = []

    def reset(self, *user_ids: int) -> None:
        self._leaves = list(user_ids)

    def apply(self, removed: list[int], added: list[int]) -> None:
        for uid in removed:
            self._leaves[self.index(uid)] = None
        for uid in added:
            try:
                self._leaves[self._leaves.index(None)] = uid
            except ValueError:
                self._leaves.append(uid)
        while self._leaves and self._leaves[-1] is None:
            self._leaves.pop()

    def index(self, user_id: int) -> int:
        try:
            return self._leaves.index(user_id)
        except ValueError:
            raise DaveStepError(f"user {user_id} has no leaf in the group") from None

    def get(self, user_id: int) -> int | None:
        return self._leaves.index(user_id) if user_id in self._leaves else None
