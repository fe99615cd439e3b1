from __future__ import annotations

from router.stop_strings import StopStringMatcher


def feed_all(matcher: StopStringMatcher, pieces: list[str]) -> tuple[str, bool]:
    out = []
    for piece in pieces:
        match = matcher.feed(piece)
        out.append(match.text)
        if match.stopped:
            return "".join(out), True
    return "".join(out) + matcher.flush(), False


def test_stop_string_split_across_pieces_is_cut() -> None:
    assert feed_all(StopStringMatcher(["END"]), ["abc E", "N", "D more"]) == ("abc ", True)


def test_partial_match_is_held_then_released() -> None:
    matcher = StopStringMatcher(["END"])
    assert matcher.feed("abc EN").text == "abc "
    assert matcher.feed("x").text == "ENx"


def test_unfinished_partial_is_flushed_at_the_end() -> None:
    assert feed_all(StopStringMatcher(["END"]), ["ab", "EN"]) == ("abEN", False)


def test_include_stop_string_and_earliest_of_several() -> None:
    matcher = StopStringMatcher(["\n\n", "b"], include_stop=True)
    assert feed_all(matcher, ["aa", "ab\n\n"]) == ("aaab", True)


def test_no_stop_strings_passes_text_through() -> None:
    matcher = StopStringMatcher([])
    assert matcher.feed("abc").text == "abc"
