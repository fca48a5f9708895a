"""Tilt matching shared by `faket noise` and `faket style`, and tilt chunks."""

import numpy as np
import pytest

from faket.errors import InputError
from faket.imaging.tilts import match_by_angle, match_stack, parse_tilt_chunk


def test_match_by_angle_nearest_not_index():
    content = np.array([-60.0, -30.0, 0.0, 30.0, 60.0])
    ref = np.array([0.0, 3.0, -3.0, 29.0, -31.0, 61.0, -58.0])  # another scheme, another order
    idx, gap = match_by_angle(content, ref)
    np.testing.assert_array_equal(idx, [6, 4, 0, 3, 5])
    np.testing.assert_allclose(gap, [2, 1, 0, 1, 1])
    with pytest.raises(InputError, match="ref.mrc"):
        match_by_angle(content, ref, max_gap_deg=1.5, source="ref.mrc")


def test_match_stack_single_image_index_and_refusal():
    warnings = []
    idx, gap = match_stack(
        [-3.0, 0.0, 3.0], 3, None, 1, reference_path="m.mrc", content_path="c.mrc", max_gap_deg=5, warn=warnings.append
    )
    assert idx.tolist() == [0, 0, 0] and not gap.any() and not warnings  # one micrograph serves all
    idx, _ = match_stack(
        None,
        3,
        None,
        3,
        reference_path="r.mrc",
        content_path="c.mrc",
        max_gap_deg=5,
        kind="style",
        warn=warnings.append,
    )
    assert idx.tolist() == [0, 1, 2] and "r.mrc" in warnings[-1] and "by index" in warnings[-1]
    idx, _ = match_stack(
        None, 3, [0.0, 1.0, 2.0], 3, reference_path="r.mrc", content_path="c.mrc", max_gap_deg=5, warn=warnings.append
    )
    assert "c.mrc" in warnings[-1]  # the side without .tlt
    with pytest.raises(InputError, match=r"r\.mrc: no tilt angles .* 4 style tilts to 3 content tilts"):
        match_stack(
            [0.0, 1.0, 2.0], 3, None, 4, reference_path="r.mrc", content_path="c.mrc", max_gap_deg=5, kind="style"
        )


def test_match_stack_warns_on_gaps_and_fails_beyond_max():
    warnings = []
    idx, gap = match_stack(
        [-4.0, 0.0, 4.0],
        3,
        [-2.0, 0.0, 2.0],
        3,
        reference_path="r.mrc",
        content_path="c.mrc",
        max_gap_deg=5,
        warn=warnings.append,
    )
    assert idx.tolist() == [0, 1, 2] and gap.max() == 2.0
    assert (
        len(warnings) == 1 and "content tilt -4 deg uses the nearest reference tilt -2 deg (2 deg away)" in warnings[0]
    )
    with pytest.raises(InputError):
        match_stack(
            [-4.0, 0.0, 9.0], 3, [-2.0, 0.0, 2.0], 3, reference_path="r.mrc", content_path="c.mrc", max_gap_deg=5
        )


def test_parse_tilt_chunk():
    assert parse_tilt_chunk("0:16", 61) == (0, 16)
    assert parse_tilt_chunk(None, 61) == (0, 61)
    with pytest.raises(InputError, match="outside 0:61"):
        parse_tilt_chunk("48:64", 61)
