"""Which worker of this machine owns a session's media, for handing its socket over.

With ``server.workers`` > 1 every worker listens on the one public port and the kernel
spreads connections over them, so a party's session socket may reach a worker that does
not own the session. The owner is named by the session row; the node registry says
whether it is alive, on this machine, and where its loopback port is.
"""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.queue.base import NodeInfo, QueueBackend
from server.store.models import WitnessSession


def sibling_owner(owner_id: str | None, nodes: list[NodeInfo], me: NodeInfo) -> NodeInfo | None:
    """The live node ``owner_id`` if it is another worker of this machine with a loopback
    URL; None (handle the socket here, as a single process does) otherwise."""
    if not owner_id or owner_id == me.node_id or not me.machine:
        return None
    for node in nodes:
        if node.node_id == owner_id and node.internal_url and node.machine == me.machine:
            return node
    return None


async def session_owner_nearby(
    *,
    db: async_sessionmaker[AsyncSession],
    backend: QueueBackend,
    session_id: str,
    me: NodeInfo,
) -> NodeInfo | None:
    """The sibling worker owning ``session_id``'s media, or None (see ``sibling_owner``)."""
    async with db() as tx:
        owner_id = await tx.scalar(
            select(WitnessSession.node_id).where(WitnessSession.id == session_id)
        )
    if owner_id is None or owner_id == me.node_id:
        return None  # no registry read for the common case: the socket is already home
    return sibling_owner(owner_id, await backend.live_nodes(now=time.time()), me)
