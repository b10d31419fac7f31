from qa_pipeline.asr.guard import (
    PROMPT_ECHO,
    GuardResult,
    HallucinationGuard,
    collapse_repeated_sentence,
)
from qa_pipeline.asr.result import suspect_reason


def check(text: str, **kw: float) -> tuple[str, str | None]:
    g = HallucinationGuard()
    r = g.check(text, no_speech_prob=kw.get("nsp", 0.1), avg_logprob=kw.get("lp", -0.3))
    return r.text, r.dropped_reason


def test_known_hallucinations_dropped() -> None:
    assert check("字幕由Amara.org社群提供") == ("", "hallucination")
    assert check("请不吝点赞 订阅 转发 打赏支持明镜与点点栏目") == ("", "hallucination")


def test_subtitle_credits_on_line_noise_dropped() -> None:
    # what Whisper base wrote on ringback, busy and fax tones and on the corpus's line noise
    for text in ("中文字幕——", "字幕制作人", "中文字幕制作"):
        assert check(text) == ("", "hallucination"), text


def test_hallucination_removed_from_real_speech() -> None:
    assert check("您好，请问有什么可以帮您？谢谢观看")[0] == "您好，请问有什么可以帮您？"


def test_repetition_loops_collapsed() -> None:
    assert check("然后被冠冠冠冠冠冠冠冠冠冠冠冠")[0] == "然后被冠"
    assert check("好,好,好,好,好,好,好")[0] == "好"


def test_sentence_written_twice_collapsed() -> None:
    assert collapse_repeated_sentence("我想问我在冰海星区有房我想问我在冰海星区有房") == (
        "我想问我在冰海星区有房"
    )
    assert collapse_repeated_sentence("大学生利用漏洞免费吃肯德基或行大学生利用漏洞免") == (
        "大学生利用漏洞免费吃肯德基或行"
    )


def test_ordinary_repetition_kept() -> None:
    assert check("好的好的，谢谢谢谢")[0] == "好的好的，谢谢谢谢"
    assert check("我认为跑步最重要的就是给我带来了身体健康")[0] == (
        "我认为跑步最重要的就是给我带来了身体健康"
    )


def test_no_speech_segment_dropped() -> None:
    assert check("嗯", nsp=0.9, lp=-1.5) == ("", "no_speech")
    # a confident decode is kept even when no-speech probability is high
    assert check("您好", nsp=0.9, lp=-0.2) == ("您好", None)


# The guard finds a phrase on its own fold (width, case, punctuation; no script conversion)
# and cuts it from the decode as written; the text step normalises what is left, later.
GUARD_TEXTS = (
    "您好，请问有什么可以帮您？谢谢观看",
    "您好，請問有什麼可以幫您？謝謝觀看",  # traditional: as Whisper base often writes
    "請不吝點贊訂閱轉發打賞支持明鏡與點點欄目",
    "请不吝点赞 订阅 转发 打赏",
    "ＴＨＡＮＫ ＹＯＵ ＦＯＲ ＷＡＴＣＨＩＮＧ",  # full width: the fold finds it, no cut
    "thank you for watching!",
    "字幕由Amara.org社群提供",
    "中文字幕——您的订单已经发货",
    "感謝觀看",
    "好的，明白了",
)


def test_the_guard_folds_the_builtin_phrases_as_the_match_form_does() -> None:
    """The phrases cut are the same as when the guard keyed them by the text step's match
    form (simplified): the built-ins are simplified already."""
    from qa_pipeline.asr.guard import BUILTIN_HALLUCINATIONS, fold
    from qa_pipeline.text import match_form

    assert [fold(p) for p in BUILTIN_HALLUCINATIONS] == [
        match_form(p) for p in BUILTIN_HALLUCINATIONS
    ]


def test_finding_on_the_fold_loses_no_phrase_the_guard_can_cut() -> None:
    """The fold only decides whether to try the cuts: whatever it says, the guard's text is
    what cutting every phrase gives (traditional and full-width decodes included)."""
    from qa_pipeline.asr.guard import _remove_loose

    g = HallucinationGuard()
    for text in GUARD_TEXTS:
        every = text
        for p in g._phrases:
            every = _remove_loose(every, p)
        assert g._remove_phrases(text) == every, text
    assert g._remove_phrases(GUARD_TEXTS[0]) != GUARD_TEXTS[0]  # a cut was made


def test_a_kept_decode_is_never_normalised_to_nothing() -> None:
    """Which results are kept is decided on the guarded decode, before the text step; it
    must not matter: text the guard keeps normalises to text."""
    import random

    from qa_pipeline.text import normalise

    rng = random.Random(15)
    alphabet = "您好請问谢謝，。,.!！？  　ＡＢａｂ12１２…—「」\u3000\u00a0"
    g = HallucinationGuard()
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        kept = g.check(text, no_speech_prob=0.0, avg_logprob=0.0).text
        if kept:
            assert normalise(kept), repr(text)


def test_a_decode_that_only_echoes_the_prompt_is_dropped() -> None:
    """Whisper sometimes copies its prompt (the company name told as a hotword): measured on
    a corpus call, a burst of noise in the agent's channel read 星辰，星辰，星辰. Such a
    decode has no text and is marked for decoding again without the prompt."""
    g = HallucinationGuard(prompt_terms=("星辰", "张三"))
    for echo in ("星辰，星辰，星辰", "星辰", "星辰张三。", " 星辰 星辰 "):
        got = g.check(echo, no_speech_prob=0.1, avg_logprob=-0.5)
        assert got == GuardResult("", PROMPT_ECHO), echo
        assert suspect_reason(echo, got, capped=False) == PROMPT_ECHO  # decoded again
    kept = g.check("您好，星辰客服，请问有什么可以帮您", no_speech_prob=0.1, avg_logprob=-0.5)
    assert kept.text == "您好，星辰客服，请问有什么可以帮您" and kept.dropped_reason is None
    assert HallucinationGuard().check("星辰", no_speech_prob=0.1, avg_logprob=-0.5).text == "星辰"
