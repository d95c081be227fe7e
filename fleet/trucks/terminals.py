"""How a JT/T 808 terminal's phone number (终端手机号) identifies it: the one rule, used
by the importer (fleet) and by the gateway's codec (ingest)."""

from __future__ import annotations

JT808_PHONE_MAX_DIGITS = 20  # BCD[10] in the 2019 header; BCD[6] (12 digits) in 2013


def jt808_phone_key(digits: str) -> str:
    """The phone number without the leading zeros the headers pad it with (to 12
    digits in 2013, 20 in 2019), so that one terminal has one key in both editions.
    ``truck.jt808_phone`` holds this key."""
    return digits.lstrip("0") or "0"
