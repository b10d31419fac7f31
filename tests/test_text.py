from qa_pipeline.text import match_form, normalise, to_chinese_numerals, to_digits


def test_traditional_to_simplified_and_punctuation() -> None:
    assert normalise("廣州市房地產中介協會分析") == "广州市房地产中介协会分析"
    assert normalise("您好,請問有什麼可以幫您?") == "您好，请问有什么可以帮您？"


def test_full_width_folded() -> None:
    assert normalise("ＡＢＣ１２３") == "ABC123"
    assert match_form("您好！　工號１０２４。") == "您好工号1024"


def test_match_form_drops_spaces_and_punctuation() -> None:
    assert match_form("請 您 稍等 …") == "请您稍等"
    assert match_form("Hello, World") == "helloworld"


def test_numerals_both_ways() -> None:
    assert to_digits("预计在二天内，三百二十元") == "预计在2天内，320元"
    assert to_chinese_numerals("工号1024") == "工号一千零二十四"


def test_english_left_alone() -> None:
    assert normalise("I am sorry, that's not valid.") == "I am sorry, that's not valid."
