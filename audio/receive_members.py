"""Who is behind each SSRC, who is in the channel, who left, and whose audio must not be heard.

Three threads share this state: the event loop (voice gateway ops 5/11/12/13, opt-out changes), discord.py's
socket reader (filters packets) and the receive worker (identifies unannounced SSRCs, delivers audio). Every
method of `MemberDirectory` is atomic under one lock, and compound changes (a member leaving: all its SSRCs
unmapped, marked left) happen inside one call, so no thread sees half of one and no iteration races a write.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Callable, Iterable

log = logging.getLogger(__name__)

DropPredicate = Callable[[int], bool]


class MemberDirectory:
    """SSRC -> member, video SSRCs, present and departed members, and the opt-out filter (thread-safe)."""

    def __init__(self, *, own_user_id: int | None, max_ssrcs: int = 512) -> None:
        self.own_user_id = own_user_id
        self._max = max_ssrcs
        self._lock = threading.Lock()
        self._ssrc_user: OrderedDict[int, int] = OrderedDict()
        self._video: OrderedDict[int, None] = OrderedDict()
        self._present: set[int] = set()
        self._left: set[int] = set()  # op 13 seen and no op 5/11/12 since: never re-attribute audio to them
        self._opted_out: frozenset[int] = frozenset()  # replaced whole (readers need no lock)
        self._predicate: DropPredicate | None = None
        self._predicate_failed = False

    # --- voice gateway (loop thread) ----------------------------------------------------------------------------

    def map(self, ssrc: int, user_id: int) -> bool:
        """op 5 / op 12: ``ssrc`` belongs to ``user_id``. True when that changed the mapping."""
        if ssrc == 0:
            return False
        with self._lock:
            old = self._ssrc_user.get(ssrc)
            self._ssrc_user[ssrc] = user_id
            self._ssrc_user.move_to_end(ssrc)
            while len(self._ssrc_user) > self._max:
                self._ssrc_user.popitem(last=False)
            self._video.pop(ssrc, None)
            self._present.add(user_id)
            self._left.discard(user_id)
            return old != user_id

    def mark_video(self, ssrc: int) -> None:
        with self._lock:
            if ssrc in self._ssrc_user:
                return
            self._video[ssrc] = None
            while len(self._video) > self._max:
                self._video.popitem(last=False)

    def connected(self, user_id: int) -> None:
        """op 11 / 12: the member is in the channel (again)."""
        with self._lock:
            self._present.add(user_id)
            self._left.discard(user_id)

    def left(self, user_id: int) -> tuple[int, ...]:
        """op 13: unmap every SSRC of the member and mark it departed, at once. Returns the SSRCs it had."""
        with self._lock:
            ssrcs = tuple(s for s, u in self._ssrc_user.items() if u == user_id)
            for s in ssrcs:
                del self._ssrc_user[s]
            self._present.discard(user_id)
            if len(self._left) >= self._max:
                self._left.clear()
            self._left.add(user_id)
            return ssrcs

    # --- receive worker ---------------------------------------------------------------------------------------

    def adopt(self, ssrc: int, user_id: int) -> int | None:
        """Map an SSRC identified by its DAVE key (worker thread), unless the gateway got there first.

        Returns the member the SSRC belongs to now: ``user_id``, the member the gateway mapped it to meanwhile,
        or None when ``user_id`` left (op 13) since it was proposed as a candidate: its audio is not taken.
        """
        with self._lock:
            current = self._ssrc_user.get(ssrc)
            if current is not None:
                return current
            if user_id in self._left:
                return None
            self._ssrc_user[ssrc] = user_id
            self._present.add(user_id)
            return user_id

    def candidates(self, group_user_ids: Iterable[int]) -> list[int]:
        """Members of the DAVE group who may own an unannounced SSRC: not us, not departed, not opted out;
        those without a mapped SSRC first."""
        with self._lock:
            mapped = set(self._ssrc_user.values())
            left = set(self._left)
        return sorted(
            (u for u in group_user_ids if u != self.own_user_id and u not in left and not self.is_dropped(u)),
            key=lambda u: u in mapped,
        )

    # --- any thread -------------------------------------------------------------------------------------------

    def user_for(self, ssrc: int) -> int | None:
        with self._lock:
            return self._ssrc_user.get(ssrc)

    def is_video(self, ssrc: int) -> bool:
        with self._lock:
            return ssrc in self._video

    def has_left(self, user_id: int) -> bool:
        with self._lock:
            return user_id in self._left

    @property
    def present_user_ids(self) -> frozenset[int]:
        with self._lock:
            return frozenset(self._present)

    # --- opt-out ----------------------------------------------------------------------------------------------

    @property
    def opted_out(self) -> frozenset[int]:
        return self._opted_out

    def set_opted_out(self, user_ids: Iterable[int]) -> frozenset[int]:
        """Replace the opt-out set; returns the members newly added to it."""
        new = frozenset(int(u) for u in user_ids)
        with self._lock:
            added = new - self._opted_out
            self._opted_out = new
        return added

    def opt_out(self, user_id: int) -> bool:
        """True when the member was not opted out before."""
        with self._lock:
            if user_id in self._opted_out:
                return False
            self._opted_out = self._opted_out | {user_id}
            return True

    def opt_in(self, user_id: int) -> bool:
        with self._lock:
            if user_id not in self._opted_out:
                return False
            self._opted_out = self._opted_out - {user_id}
            return True

    def set_drop_predicate(self, predicate: DropPredicate | None) -> None:
        self._predicate = predicate
        self._predicate_failed = False

    def is_dropped(self, user_id: int) -> bool:
        """Whether this member's packets must be dropped unheard (opt-out set, or the predicate says so).
        A predicate that raises counts as "drop": when unsure, do not listen."""
        if user_id in self._opted_out:
            return True
        predicate = self._predicate
        if predicate is None:
            return False
        try:
            return bool(predicate(user_id))
        except Exception:
            if not self._predicate_failed:
                self._predicate_failed = True
                log.exception("voice receive: the drop predicate failed for user %s; dropping their audio", user_id)
            return True
