from qa_pipeline.asr.guard import HallucinationGuard, collapse_repeated_sentence


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
