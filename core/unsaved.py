"""Replies this process ended on screen but could not save (the database was down).

Their rows stay 'streaming', so the next turn in the thread, or the orphan sweep, would
take them for a dead process's reply and say the bot restarted: a second, false notice
under a reply the user already saw end. This process knows better. It keeps what each
such row should say, and when it finalises the thread's orphans it writes that instead.
(Another replica does not know: it still marks the row, which is what it can see.)
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from core.ports import HistoryStore
from core.reply_record import FinalState

log = logging.getLogger(__name__)

REMEMBERED = 10_000  # a long outage must not grow this without bound


class UnsavedReplies:
    def __init__(self, limit: int = REMEMBERED) -> None:
        self._pending: OrderedDict[int, FinalState] = OrderedDict()
        self._limit = limit

    def keep(self, reply_id: int, final: FinalState) -> None:
        self._pending[reply_id] = final
        while len(self._pending) > self._limit:
            self._pending.popitem(last=False)

    def __contains__(self, reply_id: object) -> bool:
        return reply_id in self._pending

    async def settle(self, store: HistoryStore, reply_id: int) -> None:
        """Write the kept final state (call only under the thread's lease). Still failing,
        it stays kept for the next try; never raises."""
        final = self._pending.get(reply_id)
        if final is None:
            return
        try:
            await final.write(store, reply_id)
        except Exception as exc:
            log.warning("could not yet save reply %s: %s", reply_id, exc)
            return
        if self._pending.get(reply_id) is final:  # not replaced or evicted meanwhile
            del self._pending[reply_id]
        log.info("saved reply %s, which the database had refused when it ended", reply_id)
