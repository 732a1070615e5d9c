"""tools/analysis_tools/get_flops.py on the tiny SAM 3: counts, consistency and the CLI."""
import os.path as osp

import pytest
# tools/analysis_tools is on sys.path through tests/conftest.py.
from get_flops import build_model, count_complexity, main

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py')


@pytest.fixture(scope='module')
def tiny(bpe_path):
    model, cfg = build_model(CONFIG, {'model.tokenizer.bpe_path': bpe_path})
    return model, cfg


def _vit_attention_flops(backbone_cfg, h, w):
    """Hand count of the ViT's attention FLOPs: 2 matmuls of 2 FLOPs per multiply-add."""
    patch = backbone_cfg.get('patch_size', 14)
    dim = backbone_cfg['embed_dims']
    heads, win = backbone_cfg['num_heads'], backbone_cfg['window_size']
    gh, gw = h // patch, w // patch
    assert gh % win == 0 and gw % win == 0, 'pick a shape that needs no window padding'
    total = 0
    for i in range(backbone_cfg['depth']):
        if i in tuple(backbone_cfg['global_att_blocks']):
            groups, tokens = 1, gh * gw
        else:
            groups, tokens = (gh // win) * (gw // win), win * win
        total += 2 * 2 * groups * heads * tokens * tokens * (dim // heads)
    return total


def test_counts_are_positive_and_consistent(tiny):
    model, cfg = tiny
    r1 = count_complexity(model, (168, 168), num_prompts=1)
    r2 = count_complexity(model, (168, 168), num_prompts=2)
    for r in (r1, r2):
        assert r.image_flops > 0 and r.prompt_flops > 0 and r.image_attention_flops > 0
        assert r.prompt_attention_flops > 0
        assert 0 < r.image_params < r.total_params and 0 < r.prompt_params < r.total_params
        assert r.image_params + r.prompt_params <= r.total_params
        assert r.image_terms_flops > 0  # once per image, counted apart from the prompts
        assert r.total_flops == pytest.approx(
            r.image_flops + r.image_terms_flops + r.num_prompts * r.prompt_flops, rel=1e-9)
    # the image tower and terms do not depend on the prompts; the prompt part grows with them
    assert r2.image_flops == r1.image_flops and r2.image_terms_flops == r1.image_terms_flops
    once = r1.image_flops + r1.image_terms_flops
    assert r2.total_flops - once == pytest.approx(2 * (r1.total_flops - once), rel=0.01)
    assert r2.prompt_flops == pytest.approx(r1.prompt_flops, rel=0.01)
    assert r2.prompt_params == r1.prompt_params


def test_attention_is_counted(tiny):
    """The CPU attention kernel, absent from torch's FLOP table, is counted exactly."""
    model, cfg = tiny
    r = count_complexity(model, (168, 168), num_prompts=1)
    assert r.image_attention_flops == _vit_attention_flops(cfg.model.backbone, 168, 168)
    big = count_complexity(model, (252, 252), num_prompts=1)
    assert big.image_attention_flops == _vit_attention_flops(cfg.model.backbone, 252, 252)
    # 2.25x the tokens: linear parts x2.25, global attention x5.06
    assert big.image_flops > 2.25 * r.image_flops
    assert big.image_attention_flops > 2.25 * r.image_attention_flops


def test_cli_prints_table(bpe_path, capsys):
    report = main([CONFIG, '--shape', '168', '168', '--prompts', '3', '--device', 'cpu',
                   '--cfg-options', f'model.tokenizer.bpe_path={bpe_path}'])
    out = capsys.readouterr().out
    assert report.num_prompts == 3 and report.shape == (168, 168)
    assert 'image tower (extract_feat)' in out and 'per prompt' in out and 'total, 3 prompts' in out
    assert f'{report.image_flops / 1e9:.4f}' in out and f'{report.total_flops / 1e9:.4f}' in out


def test_bad_shape_and_prompt_count(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match='multiples of the patch size 14'):
        count_complexity(model, (170, 168))
    with pytest.raises(ValueError, match='--prompts must be >= 1'):
        count_complexity(model, (168, 168), num_prompts=0)
