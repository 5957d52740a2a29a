"""The audit trail: every action any part records with ``append_event``, read back in order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopml.domain.events import Event
from loopml.errors import InvalidParameterError

if TYPE_CHECKING:
    from loopml.stores.metadata.database import Database


def list_events(db: Database, *, object_type: str | None = None, object_id: str | None = None,
                action: str | None = None, actor: str | None = None, since: float | None = None,
                limit: int | None = 100, newest_first: bool = True) -> list[Event]:
    """Events matching every given filter; ``action`` may end in ``*`` (``run.*``)."""
    from sqlalchemy import select

    from loopml.stores.metadata.schema.core import events

    if limit is not None and limit < 1:
        raise InvalidParameterError("limit", "events", "a positive number", limit)
    q = select(events)
    if object_type:
        q = q.where(events.c.object_type == object_type)
    if object_id:
        q = q.where(events.c.object_id == object_id)
    if action:
        if action.endswith("*"):
            prefix = action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            q = q.where(events.c.action.like(prefix + "%", escape="\\"))
        else:
            q = q.where(events.c.action == action)
    if actor:
        q = q.where(events.c.actor == actor)
    if since is not None:
        q = q.where(events.c.ts >= since)
    q = q.order_by(events.c.seq.desc() if newest_first else events.c.seq.asc())
    if limit is not None:
        q = q.limit(limit)
    with db.read() as conn:
        rows = conn.execute(q).all()
    return [Event(id=r.id, ts=r.ts, actor=r.actor, action=r.action, object_type=r.object_type,
                  object_id=r.object_id, details=dict(r.details or {})) for r in rows]
