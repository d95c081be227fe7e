"""一单四制 transitions and refusals, as pure functions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleet.alerts.cases import (
    CaseAction,
    CaseRefused,
    CaseState,
    escalation_due,
    transition,
)

from .tracks import at

OPEN, ASSIGNED, FEEDBACK, CLOSED = (
    CaseState.OPEN,
    CaseState.ASSIGNED,
    CaseState.FEEDBACK,
    CaseState.CLOSED,
)


def test_the_full_workflow() -> None:
    """open → 交办 → 反馈 → 销号, each transition attributed."""
    t1 = transition(OPEN, CaseAction.ASSIGN, actor="监管员王", assignee="二中队")
    assert (t1.from_state, t1.to_state, t1.assignee, t1.actor) == (
        OPEN,
        ASSIGNED,
        "二中队",
        "监管员王",
    )
    t2 = transition(
        ASSIGNED, CaseAction.FEEDBACK, actor="二中队", note="已补收", current_assignee="二中队"
    )
    assert t2.to_state == FEEDBACK and t2.note == "已补收"
    t3 = transition(FEEDBACK, CaseAction.CLOSE, actor="监管员王", note="现场核实已清运")
    assert t3.to_state == CLOSED


def test_reassign_and_send_back() -> None:
    assert transition(ASSIGNED, CaseAction.ASSIGN, actor="a", assignee="b").to_state == ASSIGNED
    assert transition(FEEDBACK, CaseAction.ASSIGN, actor="a", assignee="b").to_state == ASSIGNED


@pytest.mark.parametrize(
    ("state", "action", "kwargs", "why"),
    [
        (FEEDBACK, CaseAction.CLOSE, {}, "note"),
        (FEEDBACK, CaseAction.CLOSE, {"note": "   "}, "note"),
        (OPEN, CaseAction.AUTO_CLOSE, {}, "note"),
        (OPEN, CaseAction.FEEDBACK, {"note": "done"}, "assign"),
        (ASSIGNED, CaseAction.FEEDBACK, {"current_assignee": "x"}, "note"),
        (OPEN, CaseAction.ASSIGN, {}, "assignee"),
        (OPEN, CaseAction.ASSIGN, {"assignee": " "}, "assignee"),
        (CLOSED, CaseAction.ASSIGN, {"assignee": "x"}, "closed"),
        (CLOSED, CaseAction.CLOSE, {"note": "again"}, "closed"),
        (CLOSED, CaseAction.FEEDBACK, {"note": "n", "current_assignee": "x"}, "closed"),
        (OPEN, CaseAction.CLOSE, {"note": "x" * 5000}, "longer"),
    ],
)
def test_refusals(state: CaseState, action: CaseAction, kwargs: dict[str, str], why: str) -> None:
    with pytest.raises(CaseRefused, match=why):
        transition(state, action, actor="someone", **kwargs)


def test_every_transition_needs_an_actor() -> None:
    with pytest.raises(CaseRefused, match="actor"):
        transition(OPEN, CaseAction.ASSIGN, actor="  ", assignee="x")


def test_a_supervisor_may_dismiss_an_open_case_with_a_note() -> None:
    assert (
        transition(OPEN, CaseAction.CLOSE, actor="s", note="误报：收集点已撤除").to_state == CLOSED
    )


def test_escalation_levels() -> None:
    due, day = at("12:00"), timedelta(hours=24)
    assert escalation_due(state=OPEN, due=due, level=0, now=at("11:59"), repeat=day) is None
    assert escalation_due(state=OPEN, due=due, level=0, now=at("12:00"), repeat=day) == 1
    assert escalation_due(state=ASSIGNED, due=due, level=1, now=at("13:00"), repeat=day) is None
    assert escalation_due(state=ASSIGNED, due=due, level=1, now=due + day, repeat=day) == 2
    assert escalation_due(state=CLOSED, due=due, level=0, now=due + day, repeat=day) is None
    assert escalation_due(state=OPEN, due=due, level=3, now=due + 9 * day, repeat=day) is None
