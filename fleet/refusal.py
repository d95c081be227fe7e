"""Refusals a person must act on, said once for every language: a stable `code`, the
`params` its words are filled with, and the English text.

API clients read the English text (`detail`, `message`); the dashboard says the code
in the user's language (fleet/web/static/js/i18n.js, keys `err.<code>`, params as
`{name}`), so no server text reaches the Chinese UI."""

from __future__ import annotations

from collections.abc import Mapping

Param = str | int | float


class Refused(ValueError):
    """An expected refusal: `str()` is the English text."""

    def __init__(self, code: str, text: str, **params: Param) -> None:
        super().__init__(text)
        self.code = code
        self.params: Mapping[str, Param] = params

    @property
    def text(self) -> str:
        return str(self)
