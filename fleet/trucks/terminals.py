"""How a truck's terminals identify it: the columns that name one, and the rule for a
JT/T 808 terminal's phone number (终端手机号), used by the importer and the trucks API
(fleet) and by the gateway's codec (ingest)."""

from __future__ import annotations

from typing import Literal

from fleet.refusal import Refused

# Truck columns that name a terminal: each may belong to one truck only.
TerminalColumn = Literal["terminal_id", "jt808_phone"]
TERMINAL_COLUMNS: tuple[TerminalColumn, ...] = ("terminal_id", "jt808_phone")

JT808_PHONE_MAX_DIGITS = 20  # BCD[10] in the 2019 header; BCD[6] (12 digits) in 2013


def jt808_phone_key(digits: str) -> str:
    """The phone number without the leading zeros the headers pad it with (to 12
    digits in 2013, 20 in 2019), so that one terminal has one key in both editions.
    ``truck.jt808_phone`` holds this key."""
    return digits.lstrip("0") or "0"


def parse_jt808_phone(text: str) -> str:
    """A phone number as a person writes it (digits, perhaps zero-padded) → its key;
    `Refused` (a ValueError) with a reason otherwise. The importer and the API both use it."""
    text = text.strip()
    shown = repr(text[:40])
    if not (text.isascii() and text.isdigit()) or len(text) > JT808_PHONE_MAX_DIGITS:
        raise Refused(
            "phone_bad",
            f"{shown} is not a phone number of 1 to {JT808_PHONE_MAX_DIGITS} digits",
            value=shown,
            max=JT808_PHONE_MAX_DIGITS,
        )
    key = jt808_phone_key(text)
    if key == "0":
        raise Refused("phone_zeros", f"{shown} is not a phone number (all zeros)", value=shown)
    return key
