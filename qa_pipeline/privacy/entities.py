"""The kinds of personal data the recognisers find, and what one finding holds."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Kind(enum.StrEnum):
    MOBILE = "mobile"
    LANDLINE = "landline"
    ID_NUMBER = "id_number"
    BANK_CARD = "bank_card"
    EMAIL = "email"
    PASSPORT = "passport"
    CODE = "code"  # a verification code said after a cue (验证码是…)
    PASSWORD = "password"  # said after a cue (密码是…)
    ADDRESS = "address"  # road + number + unit


#: the mask's label in ``label`` mode: ``[手机号]``
LABELS: dict[Kind, str] = {
    Kind.MOBILE: "手机号",
    Kind.LANDLINE: "电话号码",
    Kind.ID_NUMBER: "身份证号",
    Kind.BANK_CARD: "银行卡号",
    Kind.EMAIL: "邮箱",
    Kind.PASSPORT: "护照号",
    Kind.CODE: "验证码",
    Kind.PASSWORD: "密码",
    Kind.ADDRESS: "地址",
}

#: kinds whose value is a number: a mask may keep at most its last four digits visible
NUMERIC: frozenset[Kind] = frozenset(
    {Kind.MOBILE, Kind.LANDLINE, Kind.ID_NUMBER, Kind.BANK_CARD, Kind.PASSPORT, Kind.CODE}
)


@dataclass(frozen=True, slots=True)
class Entity:
    """One piece of personal data in a text: ``text[start:end]`` held it.

    ``value`` is its canonical form (digits for numbers, spoken numerals read as digits;
    lower-case for e-mail), the input of the keyed hash; it never leaves the process.
    ``score`` in (0, 1]: how sure the recogniser is (a checksum or a context word raise it).
    """

    kind: Kind
    start: int
    end: int
    value: str
    score: float = 1.0


#: a mask as the redactor writes it in label or hash mode (``[手机号]``,
#: ``[手机号#<digest>]``, ``[身份证号…123X]``); groups: label, digest, visible tail. The
#: recognisers never search inside one, so redacting twice changes nothing.
MASK_RE = re.compile(
    r"\[(" + "|".join(map(re.escape, LABELS.values())) + r")(?:#([0-9a-f]*))?(?:…([0-9X]{1,4}))?\]"
)
