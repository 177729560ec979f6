"""The pages' message tables (web/static/js/messages.js): both languages have
the same keys and placeholders, and every key the HTML names exists."""

import re
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"
ENTRY = re.compile(r'^\s+"([^"]+)": "((?:[^"\\]|\\.)*)",$', re.MULTILINE)
CJK = re.compile(r"[\u3400-\u9fff]")


def tables() -> dict[str, dict[str, str]]:
    text = (WEB / "static" / "js" / "messages.js").read_text(encoding="utf-8")
    zh_part, en_part = text.split("\n  en: {\n")
    return {"zh-CN": dict(ENTRY.findall(zh_part)), "en": dict(ENTRY.findall(en_part))}


def test_both_languages_have_the_same_keys_and_placeholders() -> None:
    zh, en = tables()["zh-CN"], tables()["en"]
    assert len(zh) > 200
    assert zh.keys() == en.keys()
    for key in zh:
        assert set(re.findall(r"\{\w+\}", zh[key])) == set(re.findall(r"\{\w+\}", en[key])), key


def test_chinese_is_chinese_and_english_is_not() -> None:
    zh, en = tables()["zh-CN"], tables()["en"]
    for key, value in zh.items():
        words = re.sub(r"\{\w+\}|PDF|JPG|PNG|OFD|English", "", value)
        if re.search(r"[A-Za-z]", words):
            assert CJK.search(value), key
    for key, value in en.items():
        if key != "lang.toggle":
            assert not CJK.search(value), key


def test_every_key_in_the_pages_exists() -> None:
    zh = tables()["zh-CN"]
    for page in (WEB / "pages").glob("*.html"):
        html = page.read_text(encoding="utf-8")
        for key in re.findall(r'data-i18n(?:-placeholder|-label|-title)?="([^"{]+)"', html):
            assert key in zh, (page.name, key)
    for name in ("index", "kiosk", "expert", "clerk", "admin"):
        assert f"page.{name}" in zh


def test_no_page_script_writes_chinese_of_its_own() -> None:
    """Every visible string comes from the message table: Chinese in a script's code
    (not its comments) is a string the English page would show untranslated."""
    comment = re.compile(r"(^|\s)//.*$")
    found = []
    for script in sorted((WEB / "static" / "js").glob("*.js")):
        if script.name == "messages.js":
            continue
        for number, line in enumerate(script.read_text(encoding="utf-8").splitlines(), 1):
            if CJK.search(comment.sub("", line)):
                found.append(f"{script.name}:{number}")
    assert found == []
