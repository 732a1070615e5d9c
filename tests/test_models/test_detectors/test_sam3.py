"""SAM3 detector: parity with the official model, prompts, bad input, wrappers and export."""
import copy
import os
import os.path as osp
import sys
import warnings

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmdet.structures.mask import BitmapMasks
from mmengine.structures import InstanceData

from mmsam3.testing.tiny_model import build_tiny_sam3
from tests.utils import free_port

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
SIZE = 168


def build_tiny(bpe_path, **overrides):
    return build_tiny_sam3(bpe_path, **overrides)


def make_sample(texts, size=SIZE, **meta):
    info = dict(texts=texts, img_shape=(size, size), ori_shape=(size, size),
                batch_input_shape=(size, size), scale_factor=(1.0, 1.0))
    info.update(meta)
    return DetDataSample(metainfo=info)


def training_sample(size=SIZE):
    masks = np.zeros((2, size, size), np.uint8)
    masks[0, 10:50, 10:60] = 1
    masks[1, 80:120, 90:150] = 1
    sample = make_sample(['red apple', 'dog'], size, prompt_labels=[3, 5])
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10., 10, 60, 50], [90, 80, 150, 120]]),
        labels=torch.tensor([3, 3]), masks=BitmapMasks(masks, size, size))
    return sample


# ------------------------------------------------------------------------------------- parity
@pytest.mark.requires_official
@pytest.mark.parametrize('seed', [0, 1])
def test_parity_tiny_with_official(bpe_path, seed):
    from parity_official import DEFAULT_CASES, run_parity

    assert any(c[1] is not None and c[0] != 'visual' for c in DEFAULT_CASES)  # text + boxes
    assert any(c[0] == 'visual' for c in DEFAULT_CASES)  # boxes only
    diffs, report = run_parity('tiny', seed, bpe_path=bpe_path, verbose=False)
    assert set(diffs) >= {'scores', 'boxes', 'presence_logit', 'mask_logits'}
    assert max(diffs.values()) <= 1e-4, diffs
    assert report['unknown'] == []


@pytest.mark.slow
@pytest.mark.requires_official
def test_parity_full_with_official(bpe_path):
    from parity_official import run_parity

    diffs, report = run_parity('full', 0, bpe_path=bpe_path, verbose=True)
    assert max(diffs.values()) <= 1e-4, diffs
    assert report['dropped']  # the 32 RoPE tables


# ---------------------------------------------------------------------------------- converter
@pytest.mark.requires_official
def test_converter_cli_strict_load_and_report(bpe_path, tmp_path):
    from mmsam3.testing import official_sam3

    official = official_sam3.build_official_image_model('tiny', seed=0, bpe_path=bpe_path)
    state = official_sam3.official_state_dict_in_checkpoint_layout(official)
    # What sam3.pt adds beyond the image model: the tracker and its neck copy.
    state.update({k.replace('vision_backbone.convs.', 'vision_backbone.sam2_convs.'): v
                  for k, v in state.items() if 'vision_backbone.convs.' in k})
    state['tracker.no_mem_embed'] = torch.zeros(1, 1, 8)
    src, dst = str(tmp_path / 'sam3.pt'), str(tmp_path / 'out' / 'mmsam3.pth')
    torch.save(state, src)
    cfg = tmp_path / 'tiny.py'
    cfg.write_text(f"_base_ = '{REPO}/configs/_base_/models/sam3_tiny.py'\n"
                   f"model = dict(tokenizer=dict(bpe_path='{bpe_path}'))\n"
                   "default_scope = 'mmdet'\n")
    import subprocess
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/model_converters/sam3_to_mmsam3.py'), src, dst,
         '--verify', str(cfg)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert 'complex RoPE cache' in proc.stdout and 'interactive head' in proc.stdout
    assert 'tracker neck' in proc.stdout and 'strict=True' in proc.stdout
    # the concept-only config skips the interactive weights the converter keeps
    ckpt = torch.load(dst, weights_only=True)
    model = build_tiny(bpe_path)
    model.load_state_dict(ckpt['state_dict'], strict=True)


def test_converter_refuses_foreign_keys():
    from mmsam3.utils.sam3_checkpoint import convert_official_state_dict

    _, report = convert_official_state_dict({'detector.something_else.weight': torch.zeros(1)})
    assert report['unknown'] == ['detector.something_else.weight']


# ------------------------------------------------------------------------------- predictions
def test_predict_fills_pred_instances_sorted(bpe_path):
    model = build_tiny(bpe_path, test_cfg=dict(score_thr=0.0, max_per_img=200)).eval()
    sample = make_sample(['red apple'])
    with torch.no_grad():
        res = model.predict(torch.randn(1, 3, SIZE, SIZE), [sample])[0].pred_instances
    assert len(res) == model.bbox_head.num_queries  # every query, sorted
    assert torch.all(res.scores[:-1] >= res.scores[1:])
    assert res.masks.shape == (model.bbox_head.num_queries, SIZE, SIZE)
    assert res.masks.dtype == torch.bool
    assert res.label_names == ['red apple'] * model.bbox_head.num_queries
    assert (res.labels == 0).all()
    assert (res.bboxes >= 0).all() and (res.bboxes <= SIZE).all()


def test_predict_score_threshold_and_rescale(bpe_path):
    sample = make_sample(['cat', 'dog'], prompt_labels=[7, 2], ori_shape=(84, 336),
                         scale_factor=(SIZE / 336, SIZE / 84))
    img = torch.randn(1, 3, SIZE, SIZE)
    model = build_tiny(bpe_path, test_cfg=dict(score_thr=0.0, max_per_img=200)).eval()
    with torch.no_grad():
        every = model.predict(img, [copy.deepcopy(sample)])[0].pred_instances
    # A threshold between the scores of this random model, so some queries pass and some not.
    thr = every.scores.median().item()
    model.bbox_head.test_cfg.update(score_thr=thr, max_per_img=5)
    with torch.no_grad():
        res = model.predict(img, [sample])[0].pred_instances
    expected = every.scores[every.scores > thr][:5]
    assert len(res) == len(expected) > 0
    torch.testing.assert_close(res.scores, expected)
    torch.testing.assert_close(res.bboxes, every.bboxes[every.scores > thr][:5])
    assert set(res.labels.tolist()) <= {7, 2}
    assert res.masks.shape == (len(res), 84, 336)
    assert (res.bboxes[:, 0::2] <= 336).all() and (res.bboxes[:, 1::2] <= 84).all()
    # rescale: boxes are divided by the scale factor (x by 168/336, y by 168/84).
    with torch.no_grad():
        raw = model.predict(img, [copy.deepcopy(sample)], rescale=False)[0].pred_instances
    assert raw.masks.shape == (len(res), SIZE, SIZE)
    scale = torch.tensor([SIZE / 336, SIZE / 84] * 2)
    torch.testing.assert_close(res.bboxes, (raw.bboxes / scale).clamp(min=0).minimum(
        torch.tensor([336., 84, 336, 84])))


def test_several_prompts_run_image_tower_once(bpe_path):
    model = build_tiny(bpe_path).eval()
    calls = []
    model.backbone.register_forward_hook(lambda *a: calls.append(1))
    texts = ['red apple', 'dog', 'red apple', 'a cat']
    with torch.no_grad():
        res = model.predict(torch.randn(2, 3, SIZE, SIZE), [make_sample(texts), make_sample(['x'])])
    assert len(calls) == 1
    assert set(res[0].pred_instances.label_names) == set(texts)
    assert set(res[1].pred_instances.label_names) == {'x'}


def test_image_terms_and_trimmed_text_give_the_same_outputs(bpe_path):
    """What SAM3Predictor keeps per image (:meth:`SAM3.image_terms`) and its text tower without
    trailing padding reproduce the plain prompt stages."""
    from mmsam3.models.utils import PromptBatch

    model = build_tiny(bpe_path).eval()
    texts = ['red apple', 'a very small striped cat on a mat']
    with torch.no_grad():
        full, full_mask = model.encode_texts(texts)
        trimmed, trimmed_mask = model.encode_texts(texts, trim_padding=True)
        assert torch.equal(trimmed_mask, full_mask) and trimmed.shape == full.shape
        assert (trimmed - full)[~full_mask].abs().max() <= 1e-5
        assert trimmed[full_mask].abs().max() == 0  # padding: zeros, never read
        feats = model.extract_feat(torch.randn(1, 3, SIZE, SIZE))
        tensors = PromptBatch.from_data_samples([make_sample(texts)]).to_tensors(
            model.encode_texts, (SIZE, SIZE), torch.device('cpu'))
        ref = model.forward_prompt_feats(feats, *tensors)
        terms = model.image_terms(feats)
        assert set(terms) == {'encoder_self_attn', 'pixel_laterals'}
        got = model.forward_prompt_feats(feats, *tensors, image_terms=terms)
    for key in ('logits', 'boxes', 'presence', 'pred_masks', 'semantic_seg'):
        assert (got[key] - ref[key]).abs().max() <= 1e-4, key


def test_prompts_per_run_chunks_give_the_same_outputs(bpe_path):
    """Prompt stages in chunks (``prompts_per_run``, ``test_cfg.prompts_per_run``) equal one run;
    a bad chunk size is refused."""
    from mmsam3.models.utils import PromptBatch

    model = build_tiny(bpe_path).eval()
    samples = [make_sample(['red apple', 'dog', 'cat']), make_sample(['tree', 'dog'])]
    inputs = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        feats = model.extract_feat(inputs)
        tensors = PromptBatch.from_data_samples(samples).to_tensors(
            model.encode_texts, (SIZE, SIZE), torch.device('cpu'))
        ref = model.forward_prompt_feats(feats, *tensors)
        got = model.forward_prompt_feats(feats, *tensors, prompts_per_run=2)
        ref_pred = model.predict(inputs, copy.deepcopy(samples))
        model.bbox_head.test_cfg['prompts_per_run'] = 1
        got_pred = model.predict(inputs, copy.deepcopy(samples))
    assert set(got) == set(ref)
    for key in ('logits', 'boxes', 'presence', 'pred_masks', 'semantic_seg'):
        assert got[key].shape == ref[key].shape
        assert (got[key] - ref[key]).abs().max() <= 1e-4, key
    for r, g in zip(ref_pred, got_pred):
        assert r.pred_instances.label_names == g.pred_instances.label_names
        torch.testing.assert_close(g.pred_instances.scores, r.pred_instances.scores,
                                   rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match='prompts_per_run'):
        build_tiny(bpe_path, test_cfg=dict(prompts_per_run=0))
    with pytest.raises(KeyError, match='unknown raw output'):
        model.bbox_head.concat_outputs([dict(logits=ref['logits'], extra=ref['logits'])])


def test_text_str_like_det_inferencer():
    from mmsam3.models.utils import PromptBatch
    from mmsam3.utils import parse_text_prompt

    batch = PromptBatch.from_data_samples([DetDataSample(metainfo=dict(text='fish . shark .'))])
    assert (batch.texts, batch.labels, batch.img_ids) == (['fish', 'shark'], [0, 1], [0, 0])
    assert parse_text_prompt('fish. shark') == ['fish', 'shark']
    assert parse_text_prompt('3.5 inch floppy') == ['3.5 inch floppy']
    assert parse_text_prompt(['a . b']) == ['a . b']  # a list is taken as it is


@pytest.mark.parametrize('text', ['.', '   ', ' . . '])
def test_text_without_phrase_warns_and_predicts_nothing(bpe_path, text):
    model = build_tiny(bpe_path).eval()
    with pytest.warns(UserWarning, match='holds no phrase'):
        with torch.no_grad():
            res = model.predict(torch.randn(1, 3, SIZE, SIZE),
                                [DetDataSample(metainfo=dict(text=text, img_shape=(SIZE, SIZE)))])
    assert len(res[0].pred_instances) == 0


# ------------------------------------------------------------------------------- bad input
def test_bad_inputs_give_clear_errors(bpe_path):
    model = build_tiny(bpe_path).eval()
    img = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        # No prompt: a correct, empty result.
        res = model.predict(img, [make_sample([])])[0].pred_instances
        assert len(res) == 0
        with pytest.raises(ValueError, match='empty'):
            model.predict(img, [make_sample([''])])
        with pytest.raises(ValueError, match='multiple of the patch size'):
            model.predict(torch.randn(1, 3, SIZE + 5, SIZE), [make_sample(['dog'])])
        with pytest.raises(ValueError, match='no area inside'):
            model.predict(img, [make_sample(['dog'], prompt_boxes=[torch.tensor(
                [[SIZE + 10., 0, SIZE + 40, 30]])])])
        with pytest.warns(UserWarning, match='clipped'):
            res = model.predict(img, [make_sample(['dog'], prompt_boxes=[torch.tensor(
                [[-20., 10, 60, 50]])])])[0].pred_instances
        assert len(res) > 0
        long_phrase = ' '.join(['word'] * 60)
        with pytest.warns(UserWarning, match='truncated'):
            res = model.predict(img, [make_sample([long_phrase])])[0].pred_instances
        # Truncated like the official tokenizer: SOT + the first 30 tokens + EOT.
        ids = model.tokenizer([long_phrase])
        assert ids.shape == (1, 32) and (ids != 0).all()
        assert ids[0, -1] == model.tokenizer.eot_token_id
        assert torch.equal(ids[0, 1:-1], model.tokenizer([' '.join(['word'] * 30)])[0, 1:-1])
        same = model.predict(img, [make_sample([' '.join(['word'] * 30)])])[0].pred_instances
        assert len(res) == len(same) > 0
        torch.testing.assert_close(res.scores, same.scores)


# ------------------------------------------------------------------------------- training
def test_loss_and_backward_finite(bpe_path):
    model = build_tiny(bpe_path).train()
    losses = model.loss(torch.randn(1, 3, SIZE, SIZE), [training_sample()])
    assert {'loss_cls', 'loss_bbox', 'loss_giou', 'loss_presence', 'loss_mask', 'loss_dice',
            'd0.loss_cls', 'loss_cls_o2m'} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_from_scratch_model_is_finite(bpe_path):
    model = build_tiny(bpe_path)
    model.init_weights()
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name


def test_data_parallel_forward_backward(bpe_path):
    model = build_tiny(bpe_path).train()
    dp = torch.nn.DataParallel(model)
    inputs = torch.randn(1, 3, SIZE, SIZE)
    torch.manual_seed(3)  # DAC / dropout draws: the same in both runs
    losses = dp(inputs, [training_sample()], mode='loss')
    sum(losses.values()).backward()
    grad = model.backbone.patch_embed.proj.weight.grad.clone()
    assert grad.abs().max() > 0
    # The same step without the wrapper gives the same gradient.
    model.zero_grad(set_to_none=True)
    torch.manual_seed(3)
    sum(model(inputs, [training_sample()], mode='loss').values()).backward()
    torch.testing.assert_close(grad, model.backbone.patch_embed.proj.weight.grad)


def _ddp_worker(rank, world_size, port, bpe_path, result_file):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.distributed.init_process_group('gloo', rank=rank, world_size=world_size)
    torch.set_num_threads(1)
    model = build_tiny(bpe_path).train()
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    torch.manual_seed(rank)
    losses = ddp(torch.randn(1, 3, SIZE, SIZE), [training_sample()], mode='loss')
    sum(losses.values()).backward()
    grad = model.decoder.query_embed.weight.grad.clone()
    gathered = [torch.zeros_like(grad) for _ in range(world_size)]
    torch.distributed.all_gather(gathered, grad)
    if rank == 0:
        torch.save(dict(same=bool(torch.allclose(gathered[0], gathered[1])),
                        finite=bool(torch.isfinite(grad).all())), result_file)
    torch.distributed.destroy_process_group()


def test_ddp_two_processes_gloo(bpe_path, tmp_path):
    import torch.multiprocessing as mp

    port = free_port()
    result = str(tmp_path / 'ddp.pt')
    mp.spawn(_ddp_worker, args=(2, port, bpe_path, result), nprocs=2, join=True)
    res = torch.load(result, weights_only=True)
    assert res['same'] and res['finite']  # gradients were all-reduced


def test_vit_onnx_export_has_no_complex_ops(tmp_path):
    import onnx
    import onnxruntime as ort

    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS

    vit = MODELS.build(dict(type='SAM3ViT', img_size=SIZE, embed_dims=64, depth=4, num_heads=4,
                            window_size=6, global_att_blocks=(1, 3), pretrain_img_size=84)).eval()
    x = torch.randn(1, 3, SIZE, SIZE)
    path = str(tmp_path / 'vit.onnx')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(vit, (x, ), path, dynamo=False, opset_version=17,
                          input_names=['image'], output_names=['features'])
    graph = onnx.load(path).graph
    ops = {n.op_type for n in graph.node}
    assert not any('Complex' in op or op in ('DFT', 'STFT') for op in ops)
    for tensor in list(graph.initializer):
        assert tensor.data_type not in (onnx.TensorProto.COMPLEX64, onnx.TensorProto.COMPLEX128)
    out = ort.InferenceSession(path).run(None, {'image': x.numpy()})[0]
    with torch.no_grad():
        ref = vit(x)[0].numpy()
    assert np.abs(out - ref).max() < 1e-4
