"""Which ViT blocks and layers a shallower student keeps."""
import pytest

from mmsam3.compression import CompressionError, evenly_spaced, select_vit_blocks
from mmsam3.compression.layer_selection import segments


def test_evenly_spaced_keeps_ends_and_all():
    assert evenly_spaced(3, range(6)) == [0, 2, 5]
    assert evenly_spaced(6, range(6)) == list(range(6))
    assert evenly_spaced(1, range(6)) == [3]
    assert evenly_spaced(0, range(6)) == []
    with pytest.raises(CompressionError, match='cannot keep 7 of 6'):
        evenly_spaced(7, range(6))


def test_official_32_to_16_keeps_global_blocks_at_student_positions():
    kept = select_vit_blocks(32, (7, 15, 23, 31), 16, (3, 7, 11, 15))
    assert len(kept) == 16 and kept == sorted(kept)
    assert [kept[i] for i in (3, 7, 11, 15)] == [7, 15, 23, 31]
    # three windowed blocks of each 7-block segment, first and last included
    assert kept[:3] == [0, 3, 6]


def test_identity_selection():
    assert select_vit_blocks(4, (1, 3), 4, (1, 3)) == [0, 1, 2, 3]


def test_segments():
    assert segments(8, (3, 7)) == [[0, 1, 2], [4, 5, 6], []]


def test_ranking_keeps_highest_scores_per_segment():
    scores = [0.1, 0.9, 0.5, 1.0, 0.2, 0.3, 0.8, 1.0]
    assert select_vit_blocks(8, (3, 7), 4, (1, 3), scores) == [1, 3, 6, 7]


@pytest.mark.parametrize('depth, glob, match', [
    (40, (7, 15, 23, 31), 'more than the teacher'),
    (16, (3, 7, 11, 16), 'out of range'),
    (16, (7, 15), 'keep all of them'),
    (16, (0, 1, 2, 15), 'segment 3'),
])
def test_bad_student_sizes(depth, glob, match):
    with pytest.raises(CompressionError, match=match):
        select_vit_blocks(32, (7, 15, 23, 31), depth, glob)
