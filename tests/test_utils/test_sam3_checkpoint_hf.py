"""transformers ``Sam3Model`` / ``Sam3LiteTextModel`` checkpoints through mmsam3.

A transformers model is built locally from a config with seeded random weights (nothing is
downloaded; transformers is a test-only dependency), saved with ``save_pretrained``, converted
with ``tools/model_converters/sam3_to_mmsam3.py``, loaded strictly into mmsam3 and run on the same
image and phrase as transformers. The text goes through a ``CLIPTokenizer`` built from our local
CLIP BPE file, whose ids must equal :class:`SAM3Tokenizer`'s.
"""
import gzip
import os.path as osp
import sys

import pytest
import torch

from mmsam3.testing.random_weights import randomize_parameters

transformers = pytest.importorskip('transformers')

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tests', 'test_tools'))
from converter_cli import run_main  # noqa: E402
PHRASES = ('red apple', 'a dog sitting on the grass', 'Traffic-light!')

TINY_VISION = dict(
    model_type='sam3_vision_model', fpn_hidden_size=64,
    backbone_feature_sizes=[[48, 48], [24, 24], [12, 12]],
    backbone_config=dict(model_type='sam3_vit_model', hidden_size=64, intermediate_size=296,
                         num_hidden_layers=4, num_attention_heads=4, image_size=168,
                         window_size=6, global_attn_indexes=[1, 3], pretrain_image_size=84,
                         layer_norm_eps=1e-5))
TINY_BLOCKS = dict(
    geometry_encoder_config=dict(hidden_size=64, num_layers=2, intermediate_size=128),
    detr_encoder_config=dict(hidden_size=64, num_layers=2, intermediate_size=128),
    detr_decoder_config=dict(hidden_size=64, num_layers=2, intermediate_size=128,
                             num_queries=20),
    mask_decoder_config=dict(hidden_size=64))
# SAM 3's CLIP text tower: exact GELU, LayerNorm eps 1e-5, 32 positions.
TINY_CLIP_TEXT = dict(model_type='clip_text_model', vocab_size=49408, hidden_size=64,
                      intermediate_size=256, projection_dim=512, num_hidden_layers=2,
                      num_attention_heads=4, max_position_embeddings=32, hidden_act='gelu',
                      layer_norm_eps=1e-5)
TINY_LITE_TEXT = dict(hidden_size=64, intermediate_size=128, projection_dim=48,
                      num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=77)
LITE_TEXT_MM = dict(type='SAM3LiteTextEncoder', embed_dims=64, width=64, layers=3, heads=4,
                    hidden_dims=128, max_position_embeddings=77, projection_dims=48)


def clip_tokenizer_from_bpe(bpe_path, folder):
    """A transformers ``CLIPTokenizer`` built from the CLIP BPE merges file (no download)."""
    from transformers import CLIPTokenizer

    # the byte -> printable-unicode table of GPT-2 / CLIP BPE
    printable = (list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) +
                 list(range(ord('®'), ord('ÿ') + 1)))
    codes, n = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + n)
            n += 1
    byte_chars = [chr(c) for c in codes]
    merges = gzip.open(bpe_path).read().decode('utf-8').split('\n')[1:49152 - 256 - 2 + 1]
    vocab = byte_chars + [c + '</w>' for c in byte_chars] + [m.replace(' ', '') for m in merges]
    vocab += ['<|startoftext|>', '<|endoftext|>']
    del folder  # everything is passed in memory
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)},
                         merges=[tuple(m.split()) for m in merges], pad_token='<|endoftext|>')


def randomize_hf(model, seed):
    randomize_parameters(model, seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.copy_(0.1 * torch.randn(module.running_mean.shape,
                                                            generator=g))
                module.running_var.copy_(0.5 + torch.rand(module.running_var.shape,
                                                          generator=g))
    return model.eval()


def build_hf(lite_text, seed=0, full=False):
    from transformers import Sam3Config, Sam3LiteTextConfig, Sam3LiteTextModel, Sam3Model

    if lite_text:
        cfg = (Sam3LiteTextConfig() if full else Sam3LiteTextConfig(
            vision_config=TINY_VISION, text_config=TINY_LITE_TEXT, **TINY_BLOCKS))
        model = Sam3LiteTextModel(cfg)
    else:
        cfg = Sam3Config() if full else Sam3Config(vision_config=TINY_VISION,
                                                   text_config=TINY_CLIP_TEXT, **TINY_BLOCKS)
        model = Sam3Model(cfg)
    return randomize_hf(model, seed)


def build_mm(bpe_path, lite_text, full=False):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from mmsam3.testing.tiny_model import tiny_model_cfg

    init_default_scope('mmdet')
    if full:
        name = 'sam3_vit-l_litetext.py' if lite_text else 'sam3_vit-l.py'
        cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'models', name)).model
        cfg.tokenizer.bpe_path = bpe_path
    else:
        cfg = tiny_model_cfg(bpe_path)
        if lite_text:
            cfg.text_encoder = LITE_TEXT_MM
    return MODELS.build(cfg).eval()


def convert(src, dst, *extra):
    code, out = run_main('sam3_to_mmsam3', src, dst, *extra)
    assert code == 0, out
    return out


# One positive exemplar box (normalised cx, cy, w, h) goes with every phrase: transformers'
# Sam3Model skips the geometry encoder when no box is given, so its text-only prompts lack the
# geometry CLS token that Meta's model (and mmsam3) always append; with a box both run it.
EXEMPLAR = [0.45, 0.5, 0.3, 0.4]


@torch.no_grad()
def compare(hf, mm, tokenizer, size, seed=0, with_box=True):
    """Largest |mmsam3 - transformers| of scores, boxes (pixels) and presence over PHRASES."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import bbox_cxcywh_to_xyxy

    g = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    ours_ids = mm.tokenizer(list(PHRASES))
    text = tokenizer(list(PHRASES), padding='max_length', max_length=32, return_tensors='pt')
    valid = text['attention_mask'].bool()
    assert torch.equal(ours_ids != 0, valid), 'padding differs'
    assert torch.equal(ours_ids[valid], text['input_ids'][valid]), 'token ids differ'
    box = torch.tensor([EXEMPLAR])
    meta = dict(texts=list(PHRASES), img_shape=(size, size), ori_shape=(size, size),
                batch_input_shape=(size, size), scale_factor=(1.0, 1.0))
    if with_box:
        meta.update(prompt_boxes=[bbox_cxcywh_to_xyxy(box) * size] * len(PHRASES),
                    prompt_box_labels=[torch.ones(1, dtype=torch.long)] * len(PHRASES))
    out = mm._forward(image, [DetDataSample(metainfo=meta)])
    boxes_kw = dict(input_boxes=box[None], input_boxes_labels=torch.ones(1, 1, dtype=torch.long))
    diffs = dict(scores=0.0, boxes_px=0.0, presence=0.0)
    for p in range(len(PHRASES)):
        ref = hf(pixel_values=image, input_ids=text['input_ids'][p:p + 1],
                 attention_mask=text['attention_mask'][p:p + 1], **(boxes_kw if with_box else {}))
        q = ref.pred_logits.shape[1]
        logits, presence = out['logits'][-1, p, :q, 0], out['presence'][-1, p]
        scores = logits.sigmoid() * presence.sigmoid()
        ref_scores = ref.pred_logits[0].sigmoid() * ref.presence_logits[0].sigmoid()
        boxes = bbox_cxcywh_to_xyxy(out['boxes'][-1, p, :q]) * size
        diffs['scores'] = max(diffs['scores'], (scores - ref_scores).abs().max().item())
        diffs['boxes_px'] = max(diffs['boxes_px'],
                                (boxes - ref.pred_boxes[0] * size).abs().max().item())
        diffs['presence'] = max(diffs['presence'],
                                (presence - ref.presence_logits[0]).abs().max().item())
    return diffs


def run_parity(tmp_path, bpe_path, lite_text, full=False):
    hf = build_hf(lite_text, full=full)
    hf.save_pretrained(tmp_path / 'hf')
    report = convert(tmp_path / 'hf', tmp_path / 'mm.pth')
    assert ('hf-litetext' if lite_text else 'source format hf:') in report
    mm = build_mm(bpe_path, lite_text, full=full)
    ckpt = torch.load(tmp_path / 'mm.pth', weights_only=True)
    mm.load_state_dict(ckpt['state_dict'], strict=True)
    tokenizer = clip_tokenizer_from_bpe(bpe_path, tmp_path)
    size = hf.config.vision_config.backbone_config.image_size
    diffs = compare(hf, mm, tokenizer, size)
    # Text only: transformers leaves out the geometry CLS token, Meta's model does not.
    diffs['text_only_scores'] = compare(hf, mm, tokenizer, size, with_box=False)['scores']
    return diffs, ckpt


@pytest.mark.parametrize('lite_text', [False, True], ids=['Sam3Model', 'Sam3LiteTextModel'])
def test_transformers_parity_tiny(tmp_path, bpe_path, lite_text):
    diffs, ckpt = run_parity(tmp_path, bpe_path, lite_text)
    print(diffs)
    assert diffs['scores'] <= 1e-4 and diffs['boxes_px'] <= 1e-4 * 168, diffs
    assert diffs['presence'] <= 1e-4, diffs
    assert ckpt['meta']['source_format'] == ('hf-litetext' if lite_text else 'hf')
    assert diffs['text_only_scores'] > 1e-3, diffs  # the documented transformers difference


@pytest.mark.slow
@pytest.mark.parametrize('lite_text', [False, True], ids=['Sam3Model', 'Sam3LiteTextModel'])
def test_transformers_parity_full(tmp_path, bpe_path, lite_text):
    torch.set_num_threads(2)
    diffs, _ = run_parity(tmp_path, bpe_path, lite_text, full=True)
    print(diffs)
    assert diffs['scores'] <= 1e-4 and diffs['presence'] <= 1e-4, diffs


@pytest.mark.parametrize('lite_text', [False, True], ids=['Sam3Model', 'Sam3LiteTextModel'])
def test_transformers_round_trip_and_from_pretrained(tmp_path, lite_text):
    from safetensors.torch import load_file
    from transformers import AutoModel

    hf = build_hf(lite_text, seed=3)
    hf.save_pretrained(tmp_path / 'hf')
    convert(tmp_path / 'hf', tmp_path / 'mm.pth')
    code, out = run_main('mmsam3_to_sam3', tmp_path / 'mm.pth', tmp_path / 'back',
                         '--dst-format', 'hf')
    assert code == 0, out
    original = load_file(tmp_path / 'hf' / 'model.safetensors')
    back = load_file(tmp_path / 'back' / 'model.safetensors')
    assert set(back) == set(original)
    differing = [k for k in original if not (original[k].dtype == back[k].dtype
                                             and torch.equal(original[k], back[k]))]
    assert differing == []
    reloaded = AutoModel.from_pretrained(tmp_path / 'back')
    assert type(reloaded) is type(hf)
    state = reloaded.state_dict()
    assert all(torch.equal(state[k], original[k]) for k in original)


def test_export_hf_config_from_mmsam3_config(tmp_path, bpe_path):
    """An mmsam3 model trained from scratch (no transformers origin) exports with a config
    written from its mmsam3 config and loads in transformers with every weight in place."""
    from transformers import Sam3Model

    mm = build_mm(bpe_path, lite_text=False)
    randomize_parameters(mm, 5)
    torch.save(dict(state_dict=mm.state_dict()), tmp_path / 'mm.pth')
    cfg = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_tiny.py')
    code, out = run_main('mmsam3_to_sam3', tmp_path / 'mm.pth', tmp_path / 'hf',
                         '--dst-format', 'hf', '--config', cfg)
    assert code == 0, out
    model, info = Sam3Model.from_pretrained(tmp_path / 'hf', output_loading_info=True)
    assert info['missing_keys'] == set() or not info['missing_keys'], info
    assert not info['unexpected_keys'], info
    assert model.config.vision_config.backbone_config.layer_norm_eps == 1e-5
    assert model.config.text_config.hidden_act == 'gelu'
