"""Every refusal code the server can send has its words in the Chinese dashboard
(fleet/web/static/js/i18n.js, `err.<code>`): the Chinese UI never shows the server's
English. The codes are read from the source, where each is written once."""

from __future__ import annotations

import re
from pathlib import Path

from fleet.web import errors

ROOT = Path(__file__).resolve().parents[2]
I18N = ROOT / "fleet/web/static/js/i18n.js"
# Refused("code", …) and its subclasses, _Bad("code", …), InvalidIds(field, "code", …),
# ApiError(…, code="code"), FieldError(…, code="code"), PydanticCustomError("code", …),
# and the refused columns of a plan job.
WRITTEN = re.compile(
    r"""(?:\b(?:Refused|_Bad|AuthError|UnknownDistrict|DuplicateUser|CaseRefused|PlanningError|"""
    r"""PlanNotFound|ReplanRefused|PydanticCustomError)\(\s*f?"|InvalidIds\(\s*"\w+",\s*"|"""
    r"""\bcode\s*=\s*f?"|error_code\s*=\s*')([a-z0-9_]+(?:\{[\w.]+\})?)"""
)
# Codes written as f-strings, with every value they take.
EXPANDED = {
    "district_no_{kind}": ["district_no_depots", "district_no_points", "district_no_trucks"],
    "import_{rejected.refusal}": ["import_invalid", "import_conflict", "import_forbidden"],
}


def server_codes() -> set[str]:
    found: set[str] = set(errors._CODES.values())
    for path in (ROOT / "fleet").rglob("*.py"):
        for code in WRITTEN.findall(path.read_text(encoding="utf-8")):
            found.update(EXPANDED.get(code, [code]))
    return found


def chinese_codes() -> set[str]:
    text = I18N.read_text(encoding="utf-8")
    zh = text[text.index("zh: {") : text.index("en: {")]
    return set(re.findall(r'"err\.([a-z0-9_]+)":', zh))


def test_every_refusal_code_has_chinese_words() -> None:
    codes = server_codes()
    assert {"password_digits_only", "district_no_trucks", "latitude_range", "id_taken"} <= codes
    assert "{" not in "".join(codes), codes
    missing = sorted(codes - chinese_codes())
    assert missing == [], f"add err.<code> to the zh strings of i18n.js: {missing}"
