"""Geometry encoder -> fusion encoder -> decoder -> scoring / mask heads chained with tiny sizes,
in fp32 and with every module cast to bf16 (dtype robustness; no official code needed)."""
import pytest
import torch

from mmsam3.models.dense_heads import SAM3MaskHead, SAM3ScoringHead
from mmsam3.models.layers import (SAM3Decoder, SAM3FusionEncoder, SAM3GeometryEncoder,
                                  SAM3SinePositionEncoding)

D, HEADS, FFN, NQ, H, W, B = 32, 4, 64, 5, 6, 6, 2


@pytest.mark.parametrize('dtype', [torch.float32, torch.bfloat16])
def test_chain_runs(dtype):
    torch.manual_seed(0)
    geo = SAM3GeometryEncoder(D, 2, HEADS, FFN).to(dtype).eval()
    enc = SAM3FusionEncoder(2, D, HEADS, FFN).to(dtype).eval()
    dec = SAM3Decoder(2, D, HEADS, FFN, num_queries=NQ).to(dtype).eval()
    scoring = SAM3ScoringHead(D, D, FFN).to(dtype).eval()
    mask_head = SAM3MaskHead(D, HEADS).to(dtype).eval()

    feat = torch.randn(1, D, H, W, dtype=dtype)
    pos = SAM3SinePositionEncoding(D)(feat).to(dtype)
    img_ids = torch.tensor([0, 0])
    feats = feat.flatten(2).permute(2, 0, 1)[:, img_ids]
    feats_pos = pos.flatten(2).permute(2, 0, 1)[:, img_ids]
    boxes = torch.rand(2, B, 4) * 0.3 + 0.3
    box_mask = torch.tensor([[False, False], [False, True]])
    labels = torch.tensor([[1, 1], [0, 1]])
    with torch.no_grad():
        geo_tokens, geo_mask = geo(boxes, box_mask, labels, feats, feats_pos, (H, W))
        text = torch.randn(4, B, D, dtype=dtype)
        prompt = torch.cat([text, geo_tokens])
        prompt_mask = torch.cat([torch.zeros(B, 4, dtype=torch.bool), geo_mask], dim=1)
        memory, memory_pos = enc(feats, feats_pos, prompt, prompt_mask)
        out = dec(memory, memory_pos, (H, W), prompt, prompt_mask)
        logits = scoring(out['hs'], prompt, prompt_mask)
        masks = mask_head([
            torch.randn(1, D, 4 * H, 4 * W, dtype=dtype),
            torch.randn(1, D, 2 * H, 2 * W, dtype=dtype)
        ],
                          memory, (H, W),
                          out['hs'][-1],
                          prompt,
                          prompt_mask,
                          img_ids=img_ids)
    assert geo_tokens.shape == (3, B, D) and geo_tokens.dtype == dtype
    assert memory.shape == (H * W, B, D) and memory.dtype == dtype
    assert out['pred_boxes'].shape == (2, B, NQ, 4)
    assert logits.shape == (2, B, NQ, 1)
    assert masks['pred_masks'].shape == (B, NQ, 4 * H, 4 * W)
    assert masks['pred_masks'].dtype == dtype
    assert torch.isfinite(masks['pred_masks'].float()).all()
