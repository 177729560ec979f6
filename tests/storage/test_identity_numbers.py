"""Identity numbers (GB 11643-1999) as a table: which part of a typed number is
wrong, and how a number is shown masked."""

import datetime

import pytest

from storage.identity_numbers import Problem, check_character, problem
from storage.sensitive import mask, normalize

TODAY = datetime.date(2026, 12, 6)


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("11010519491231002X", None),
        ("11010519491231002x", None),  # lower-case x: an ID-card reader may type it so
        ("440304199001011233", None),
        ("310115198511050042", None),
        (" 4403 0419 9001 0112 33 ", None),  # spaces as people group it
        ("11010519491231002", Problem.LENGTH),  # 17 characters
        ("11010519491231002X1", Problem.LENGTH),
        ("", Problem.LENGTH),
        ("1101051949123100XX", Problem.CHARACTERS),
        ("11010519491231002Y", Problem.CHARACTERS),
        ("１１０１０５１９４９１２３１００２X", Problem.CHARACTERS),  # full-width digits
        ("910105194912310021", Problem.REGION),
        ("110105194902300021", Problem.BIRTH_DATE),  # 30 February
        ("110105189912310021", Problem.BIRTH_DATE),  # before 1900
        ("110105203001010021", Problem.BIRTH_DATE),  # not born yet
        ("110105194913010021", Problem.BIRTH_DATE),  # month 13
        ("110105194912310021", Problem.CHECK),
        ("440304199001011234", Problem.CHECK),
    ],
)
def test_which_part_of_a_typed_number_is_wrong(typed: str, expected: Problem | None) -> None:
    assert problem(typed, TODAY) is expected


def test_the_check_character_follows_iso_7064_mod_11_2() -> None:
    # The standard's own example (GB 11643-1999, annex A).
    assert check_character("11010519491231002") == "X"
    assert check_character("44030419900101123") == "3"


def test_a_number_is_shown_with_its_first_3_and_last_4_characters() -> None:
    assert mask("11010519491231002x") == "110***********002X"
    assert mask("13812345678") == "138****5678"
    assert mask("1234") == "****"
    assert normalize(" 1101-0519 ") == "11010519"
