"""Length sweeps for ``guideopt capacity``: ``512``, ``512,1024``, ``128:8192:x2``, ``128:1024:128``."""

from __future__ import annotations

import pytest

from guideopt.analyses.sweep import MAX_SWEEP_VALUES, parse_lengths
from guideopt.errors import InvalidRequestError


def test_single_value() -> None:
    assert parse_lengths("512", "input_len") == [512]


def test_list() -> None:
    assert parse_lengths("512,1024,2048", "input_len") == [512, 1024, 2048]


def test_list_tolerates_spaces_and_empty_items() -> None:
    assert parse_lengths(" 512 , 1024,,2048, ", "input_len") == [512, 1024, 2048]


def test_geometric_range_includes_both_ends() -> None:
    assert parse_lengths("128:8192:x2", "input_len") == [128, 256, 512, 1024, 2048, 4096, 8192]


def test_geometric_range_stops_before_overshooting() -> None:
    # 100, 300, 900 -- the next value, 2700, is beyond the stop.
    assert parse_lengths("100:1000:x3", "input_len") == [100, 300, 900]


def test_geometric_range_with_fractional_factor_is_rounded_and_deduplicated() -> None:
    # 1, 1.1, 1.21, ... rounds to 1,1,1,1,1,2,2,2,2,2,3,3: each length once.
    assert parse_lengths("1:3:x1.1", "output_len") == [1, 2, 3]


def test_arithmetic_range() -> None:
    assert parse_lengths("128:1024:128", "input_len") == [128, 256, 384, 512, 640, 768, 896, 1024]


def test_arithmetic_range_does_not_pass_the_stop() -> None:
    assert parse_lengths("100:350:100", "input_len") == [100, 200, 300]


def test_single_point_range() -> None:
    assert parse_lengths("64:64:x2", "input_len") == [64]
    assert parse_lengths("64:64:8", "input_len") == [64]


def test_duplicates_removed_and_sorted() -> None:
    assert parse_lengths("2048,512,1024,512,2048", "input_len") == [512, 1024, 2048]


def test_mixed_lists_and_ranges_merge_sorted_and_unique() -> None:
    got = parse_lengths("4096,128:1024:x2,300,256", "output_len")
    assert got == [128, 256, 300, 512, 1024, 4096]


@pytest.mark.parametrize(
    "text",
    [
        "x",  # not a number
        "0",  # not positive
        "-5",
        "1.5",  # not a whole number
        "10:5:2",  # stops before it starts
        "1:10:x1",  # geometric factor must be > 1
        "1:10:x0.5",
        "1:10:xabc",
        "1:10:0",  # arithmetic step must be > 0
        "1:10",  # not START:STOP:STEP
        "1:2:3:4",
        "0:10:2",  # start must be > 0
        "",  # nothing at all
        ",",
    ],
)
def test_bad_lengths_raise_invalid_request(text: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_lengths(text, "input_len")


def test_error_names_the_field() -> None:
    with pytest.raises(InvalidRequestError, match="output_len"):
        parse_lengths("x", "output_len")


def test_oversized_range_is_rejected_not_truncated() -> None:
    stop = 2 * MAX_SWEEP_VALUES
    try:
        values = parse_lengths(f"1:{stop}:1", "input_len")
    except InvalidRequestError:
        return  # refusing the sweep is fine
    assert values[-1] == stop  # ...and so is honouring it; cutting it short is not
