import pytest

from tourserver.model.vtt import VttError, parse_vtt


def test_parses_cues_with_ids_notes_and_hours():
    cues = parse_vtt("WEBVTT - night\n\nNOTE made by hand\n\n1\n00:00.000 --> 00:01.250\nA\n\n"
                     "01:00:02.000 --> 01:00:03.500 align:start\nB\nC\n")
    assert [(c.start_s, c.end_s, c.text) for c in cues] == [(0.0, 1.25, "A"),
                                                           (3602.0, 3603.5, "B\nC")]


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("WEBVT\n\n00:00.000 --> 00:01.000\nA\n", 1, "WEBVTT"),
        ("WEBVTT\n\n00:00.000 --> 00:0x.000\nA\n", 3, "timestamp"),
        ("WEBVTT\n\n00:02.000 --> 00:01.000\nA\n", 3, "ends before"),
        ("WEBVTT\n\n00:02.000 --> 00:03.000\nA\n\n00:01.000 --> 00:04.000\nB\n", 6, "order"),
        ("WEBVTT\n\n00:00.000 --> 00:01.000\n", 3, "no text"),
        ("WEBVTT\n", 1, "no cues"),
    ],
)
def test_errors_name_the_line(text, line, words):
    with pytest.raises(VttError) as info:
        parse_vtt(text)
    assert info.value.line == line and words in str(info.value)
