"""一单四制 case workflow: which transition is allowed, and when a case is overdue.

问题清单 → 交办 → 反馈 → 销号 → 通报:

    open ──assign──▶ assigned ──feedback──▶ feedback ──close──▶ closed
      │                 ▲  │                   │
      │                 └──┼──assign (reassign / send back)
      └────────── close (with a note) / auto_close (later evidence) ──▶ closed

Every alert opens a case, or joins the open case of the same subject (point or
truck) and service date. Every transition is a ``case_event`` with its time and
actor. Closing needs a note; feedback needs a note and an assignee; a closed case
accepts nothing (a new alert for its subject opens a new case). A case past its
due time escalates once per ``escalation_repeat`` until it closes; the level says
how many times it has.

This module is pure; the SQL that applies a transition is in ``repo``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from fleet.refusal import Refused


class CaseState(StrEnum):
    OPEN = "open"
    ASSIGNED = "assigned"
    FEEDBACK = "feedback"
    CLOSED = "closed"


class CaseAction(StrEnum):
    OPEN = "open"
    ATTACH = "attach"  # another alert for the same subject joined the case
    ASSIGN = "assign"  # 交办
    FEEDBACK = "feedback"  # 反馈
    CLOSE = "close"  # 销号
    AUTO_CLOSE = "auto_close"  # later evidence cleared the subject
    ESCALATE = "escalate"


SYSTEM_ACTOR = "system"
MAX_NOTE_CHARS = 4000
MAX_NAME_CHARS = 200


class CaseRefused(Refused):
    """The transition is not allowed; the message says why, for a person."""


class CaseNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class Transition:
    action: CaseAction
    from_state: CaseState
    to_state: CaseState
    actor: str
    note: str | None = None
    assignee: str | None = None


def _clean(text: str | None, what: str, limit: int) -> str | None:
    if text is None:
        return None
    text = text.strip()
    if len(text) > limit:
        raise CaseRefused(
            "case_text_too_long", f"{what} is longer than {limit} characters", field=what, max=limit
        )
    return text or None


def transition(
    state: CaseState,
    action: CaseAction,
    *,
    actor: str,
    note: str | None = None,
    assignee: str | None = None,
    current_assignee: str | None = None,
) -> Transition:
    """The transition `action` makes from `state`, or CaseRefused saying why not."""
    actor_clean = _clean(actor, "actor", MAX_NAME_CHARS)
    if not actor_clean:
        raise CaseRefused("case_no_actor", "every transition needs an actor (who did it)")
    note = _clean(note, "note", MAX_NOTE_CHARS)
    assignee = _clean(assignee, "assignee", MAX_NAME_CHARS)
    if state == CaseState.CLOSED and action != CaseAction.ATTACH:
        raise CaseRefused("case_closed", "the case is closed (销号); a new alert opens a new case")
    if action in (CaseAction.OPEN, CaseAction.ATTACH, CaseAction.ESCALATE):
        if action == CaseAction.OPEN and state != CaseState.OPEN:
            raise CaseRefused("case_opened_twice", "a case is opened only once")
        return Transition(action, state, state, actor_clean, note)
    if action == CaseAction.ASSIGN:
        if not assignee:
            raise CaseRefused(
                "case_needs_assignee", "交办 needs an assignee (a crew, a person or a truck)"
            )
        return Transition(action, state, CaseState.ASSIGNED, actor_clean, note, assignee)
    if action == CaseAction.FEEDBACK:
        if state == CaseState.OPEN or current_assignee is None:
            raise CaseRefused(
                "case_not_assigned", "反馈 comes from the assignee: assign the case (交办) first"
            )
        if not note:
            raise CaseRefused("case_needs_note", "反馈 needs a note saying what was done")
        return Transition(action, state, CaseState.FEEDBACK, actor_clean, note)
    if action in (CaseAction.CLOSE, CaseAction.AUTO_CLOSE):
        if not note:
            raise CaseRefused(
                "case_needs_note", "销号 needs a note saying how the problem was resolved"
            )
        return Transition(action, state, CaseState.CLOSED, actor_clean, note)
    raise CaseRefused("case_unknown_action", f"unknown action {action!r}", action=str(action))


Severity = Literal["normal", "high"]


def due_at(
    opened_at: datetime, severity: str, *, due_h_high: float, due_h_normal: float
) -> datetime:
    hours = due_h_high if severity == "high" else due_h_normal
    return opened_at + timedelta(hours=hours)


def escalation_due(
    *,
    state: CaseState,
    due: datetime,
    level: int,
    now: datetime,
    repeat: timedelta,
    max_level: int = 3,
) -> int | None:
    """The level an overdue case should escalate to now, or None."""
    if state == CaseState.CLOSED or level >= max_level:
        return None
    next_at = due + repeat * level
    return level + 1 if now >= next_at else None
