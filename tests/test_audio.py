from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qa_pipeline.audio import load_call
from qa_pipeline.errors import AudioError
from qa_pipeline.messages import Role


def tone(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate"),
    [
        ("WAV", "PCM_16", 8000),
        ("WAV", "ULAW", 8000),
        ("WAV", "ALAW", 8000),
        ("WAV", "PCM_16", 44100),
        ("FLAC", "PCM_16", 48000),
        ("WAV", "FLOAT", 16000),
    ],
)
def test_formats_and_rates(tmp_path: Path, fmt: str, subtype: str, rate: int) -> None:
    stereo = np.stack([tone(2.0, rate, 300), tone(2.0, rate, 600)], axis=1)
    f = tmp_path / f"call.{fmt.lower()}"
    sf.write(str(f), stereo, rate, format=fmt, subtype=subtype)
    call = load_call(f)
    assert call.roles == (Role.AGENT, Role.CUSTOMER)
    assert call.sample_rate == 16000
    assert call.source_rate == rate
    assert len(call.channels) == 2
    assert abs(call.duration - 2.0) < 0.01
    # the channels stay apart: 300 Hz on the left, 600 Hz on the right
    spec0 = np.abs(np.fft.rfft(call.channels[0]))
    spec1 = np.abs(np.fft.rfft(call.channels[1]))
    freqs = np.fft.rfftfreq(len(call.channels[0]), 1 / 16000)
    assert abs(freqs[spec0.argmax()] - 300) < 5
    assert abs(freqs[spec1.argmax()] - 600) < 5


def test_mono_is_one_unknown_speaker(tmp_path: Path) -> None:
    f = tmp_path / "mono.wav"
    sf.write(str(f), tone(1.0, 16000), 16000)
    call = load_call(f)
    assert call.roles == (Role.UNKNOWN,)


def test_channel_roles_from_config(tmp_path: Path) -> None:
    f = tmp_path / "swapped.wav"
    sf.write(str(f), np.stack([tone(1, 8000), tone(1, 8000)], axis=1), 8000)
    assert load_call(f, (Role.CUSTOMER, Role.AGENT)).roles == (Role.CUSTOMER, Role.AGENT)


def test_other_formats_via_ffmpeg(tmp_path: Path) -> None:
    import av

    f = tmp_path / "call.ogg"
    with av.open(str(f), "w") as out:
        stream = out.add_stream("libopus" if "libopus" in av.codecs_available else "opus", 48000)
        stream.layout = "stereo"
        data = np.stack([tone(1.0, 48000, 300), tone(1.0, 48000, 600)])
        frame = av.AudioFrame.from_ndarray(data, format="fltp", layout="stereo")
        frame.sample_rate = 48000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    call = load_call(f)
    assert len(call.channels) == 2
    assert abs(call.duration - 1.0) < 0.1


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"nope\.wav: no such file"):
        load_call(tmp_path / "nope.wav")


def test_empty_file(tmp_path: Path) -> None:
    f = tmp_path / "empty.wav"
    f.write_bytes(b"")
    with pytest.raises(AudioError, match=r"empty\.wav: file is empty"):
        load_call(f)


def test_not_audio(tmp_path: Path) -> None:
    f = tmp_path / "notes.wav"
    f.write_text("these are meeting notes, not audio\n" * 20)
    with pytest.raises(AudioError, match=r"notes\.wav: not an audio file"):
        load_call(f)


def test_truncated_wav(tmp_path: Path) -> None:
    f = tmp_path / "cut.wav"
    sf.write(str(f), tone(3.0, 8000), 8000, subtype="PCM_16")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioError, match=r"cut\.wav: truncated WAV"):
        load_call(f)


def test_corrupt_header(tmp_path: Path) -> None:
    f = tmp_path / "corrupt.wav"
    sf.write(str(f), tone(1.0, 8000), 8000)
    data = bytearray(f.read_bytes())
    data[12:40] = b"\x00" * 28  # wipe the format chunk
    f.write_bytes(bytes(data))
    with pytest.raises(AudioError, match=r"corrupt\.wav"):
        load_call(f)


def test_silent_file(tmp_path: Path) -> None:
    f = tmp_path / "silent.wav"
    sf.write(str(f), np.zeros((8000 * 3, 2), dtype=np.float32), 8000)
    with pytest.raises(AudioError, match=r"silent\.wav: silent"):
        load_call(f)


def test_header_only_wav(tmp_path: Path) -> None:
    f = tmp_path / "header.wav"
    sf.write(str(f), np.zeros((0, 1), dtype=np.float32), 8000)
    with pytest.raises(AudioError, match=r"header\.wav: .*no audio"):
        load_call(f)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="is a directory"):
        load_call(tmp_path)


def test_channel_end_is_where_a_side_hung_up() -> None:
    from qa_pipeline.audio import channel_end

    rng = np.random.default_rng(0)
    line = (rng.standard_normal(16000 * 10) * 0.001).astype(np.float32)  # -60 dBFS noise
    assert channel_end(line, 16000) == 10.0  # line noise to the end: still on the line
    hung = line.copy()
    hung[16000 * 6 :] = 0.0  # nothing at all after 6 s: that side hung up
    assert abs(channel_end(hung, 16000) - 6.0) < 1e-3
    blip = line.copy()
    blip[-800:] = 0.0  # 50 ms of digital silence is a codec gap, not a hang-up
    assert channel_end(blip, 16000) == 10.0
    assert channel_end(np.zeros(16000, dtype=np.float32), 16000) == 0.0
