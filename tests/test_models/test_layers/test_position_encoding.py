"""Parity of the sine position encodings with the official ``sam3`` helpers."""
import pytest
import torch

from mmsam3.models.layers import (SAM3SinePositionEncoding, encode_box_cxcywh,
                                  gen_sineembed_for_position, sine_encode_coords)


@pytest.mark.requires_official
def test_map_encoding_matches_official():
    from sam3.model.position_encoding import PositionEmbeddingSine
    ref = PositionEmbeddingSine(64)
    ours = SAM3SinePositionEncoding(64)
    for shape in [(2, 3, 6, 8), (1, 5, 7, 7)]:
        x = torch.zeros(shape)
        out = ours(x)
        assert out.shape == (shape[0], 64, shape[2], shape[3])
        assert (out - ref(x)).abs().max() <= 1e-6
    # No parameters or buffers: nothing to replicate or move.
    assert len(ours.state_dict()) == 0


@pytest.mark.requires_official
def test_box_and_coordinate_encodings_match_official():
    from sam3.model.model_misc import gen_sineembed_for_position as official_gen
    from sam3.model.position_encoding import PositionEmbeddingSine
    torch.manual_seed(0)
    pe = PositionEmbeddingSine(64)
    boxes = torch.rand(11, 4)
    cx, cy, w, h = boxes.unbind(-1)
    ref_x, ref_y = pe._encode_xy(cx, cy)
    assert (sine_encode_coords(cx, 32) - ref_x).abs().max() <= 1e-6
    assert (sine_encode_coords(cy, 32) - ref_y).abs().max() <= 1e-6
    ours = encode_box_cxcywh(boxes, 64)
    assert ours.shape == (11, 66)
    assert (ours - pe.encode_boxes(cx, cy, w, h)).abs().max() <= 1e-6
    enc_x, enc_y = SAM3SinePositionEncoding(64).encode_xy(cx, cy)
    assert (enc_x - ref_x).abs().max() <= 1e-6 and (enc_y - ref_y).abs().max() <= 1e-6

    ref_boxes = torch.rand(5, 3, 4)
    out = gen_sineembed_for_position(ref_boxes, 32)
    assert out.shape == (5, 3, 64)
    assert (out - official_gen(ref_boxes, 32)).abs().max() <= 1e-6
    points = torch.rand(5, 3, 2)
    assert (gen_sineembed_for_position(points, 32) - official_gen(points, 32)).abs().max() <= 1e-6
