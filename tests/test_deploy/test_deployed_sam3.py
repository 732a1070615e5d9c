"""The deployed tiny SAM 3 (three ONNX graphs on ONNX Runtime) against the PyTorch model."""
import json
import os
import os.path as osp
import shutil

import pytest
import torch
from mmdet.structures import DetDataSample

from mmsam3.deploy import MANIFEST_NAME, DeployedSAM3, TextFeatureCache

SIZE = 168
TOL = 1e-4


def sample(texts, **meta):
    info = dict(texts=list(texts), img_shape=(SIZE, SIZE), ori_shape=(SIZE, SIZE),
                batch_input_shape=(SIZE, SIZE), scale_factor=(1.0, 1.0))
    info.update(meta)
    return DetDataSample(metainfo=info)


def image(seed=0, size=SIZE):
    return torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(seed))


def max_diffs(ref, got):
    """Largest |PyTorch - deployed| per raw output (PyTorch keeps every decoder layer)."""
    out = {}
    for key in ('logits', 'boxes', 'presence', 'pred_masks', 'semantic_seg'):
        r = ref[key][-1:] if key in ('logits', 'boxes', 'presence') else ref[key]
        assert r.shape == got[key].shape, key
        out[key] = float((r - got[key]).abs().max())
    return out


def assert_parity(model, deployed, x, data_sample):
    with torch.no_grad():
        ref = model._forward(x, [data_sample])
        got = deployed._forward(x, [data_sample])
    diffs = max_diffs(ref, got)
    assert all(v <= TOL for v in diffs.values()), diffs
    return diffs


def assert_same_predictions(model, deployed, x, data_sample):
    with torch.no_grad():
        a = model.predict(x, [data_sample.clone()])[0].pred_instances
        b = deployed.predict(x, [data_sample.clone()])[0].pred_instances
    assert a.label_names == b.label_names
    assert torch.equal(a.labels, b.labels)
    assert torch.allclose(a.scores, b.scores, atol=TOL)
    assert torch.allclose(a.bboxes, b.bboxes, atol=1e-3)  # pixels of a 168 px image
    assert (a.masks != b.masks).float().mean() < 1e-3
    return a, b


def test_deploy_tool_writes_three_graphs_and_a_manifest(tiny_deployment):
    wd = tiny_deployment.work_dir
    with open(osp.join(wd, MANIFEST_NAME)) as f:
        manifest = json.load(f)
    assert set(manifest['graphs']) == {'vision_tower', 'text_tower', 'prompt_decoder'}
    for name, entry in manifest['graphs'].items():
        assert osp.isfile(osp.join(wd, entry['file']))
        assert not entry['external_data']  # tiny graphs are far below the threshold
    vision = manifest['graphs']['vision_tower']
    assert vision['inputs'] == [dict(name='image', dtype='float32', shape=[1, 3, SIZE, SIZE])]
    assert [o['shape'] for o in vision['outputs']] == [[1, 64, 48, 48], [1, 64, 24, 24],
                                                       [1, 64, 12, 12]]
    text = manifest['graphs']['text_tower']
    assert text['inputs'] == [dict(name='token_ids', dtype='int64', shape=['num_prompts', 32])]
    assert [o['dtype'] for o in text['outputs']] == ['float32', 'bool']
    dec = manifest['graphs']['prompt_decoder']
    assert [i['name'] for i in dec['inputs']] == [
        'feat_s4', 'feat_s8', 'feat_s16', 'text_feats', 'text_mask', 'boxes', 'box_labels',
        'box_mask']
    assert dec['outputs'][0] == dict(name='logits', dtype='float32',
                                     shape=[1, 'num_prompts', 20, 1])
    assert [i['shape'] for i in dec['inputs'][5:]] == [['num_prompts', 'num_boxes', 4],
                                                       ['num_prompts', 'num_boxes'],
                                                       ['num_prompts', 'num_boxes']]
    # The tool ran the deployed model on the image beside PyTorch.
    diff = tiny_deployment.diff
    assert diff['num'][0] == diff['num'][1] > 0
    assert diff['scores'] <= TOL and diff['boxes'] <= 1e-3


def test_two_text_prompts_match_pytorch(tiny_deployment, deployed):
    assert_parity(tiny_deployment.model, deployed, image(0), sample(['red circle', 'blue square']))


def test_text_and_exemplar_boxes_match_pytorch(tiny_deployment, deployed):
    s = sample(['red circle', 'blue square'],
               prompt_boxes=[[[20., 30., 90., 100.], [100., 10., 160., 60.]], None],
               prompt_box_labels=[[1, 0], None])
    assert_parity(tiny_deployment.model, deployed, image(1), s)
    assert_same_predictions(tiny_deployment.model, deployed, image(1), s)


def test_prompt_from_the_text_feature_cache(tiny_deployment, tmp_path):
    model = tiny_deployment.model
    path = str(tmp_path / 'cache.npz')
    TextFeatureCache.from_model(model, ['green triangle', 'yellow circle']).save(path)
    wd = tiny_deployment.work_dir
    # No text graph at all: every phrase must come from the cache.
    files = [osp.join(wd, f) for f in ('vision_tower.onnx', 'prompt_decoder.onnx')]
    no_text = DeployedSAM3(tiny_deployment.cfg, files, text_cache=path)
    assert 'text_tower' not in no_text.graphs
    s = sample(['yellow circle', 'green triangle'])
    assert_parity(model, no_text, image(2), s)
    with pytest.raises(KeyError, match='encode_texts.py'):
        no_text.predict(image(2), [sample(['purple star'])])


def test_changing_the_phrase_needs_no_export(tiny_deployment, deployed):
    wd = tiny_deployment.work_dir
    stamps = {f: os.stat(osp.join(wd, f)).st_mtime_ns for f in os.listdir(wd)}
    x = image(3)
    first = assert_same_predictions(tiny_deployment.model, deployed, x, sample(['red circle']))
    second = assert_same_predictions(tiny_deployment.model, deployed, x,
                                     sample(['grey triangle']))
    assert first[1].label_names[0] == 'red circle' and second[1].label_names[0] == 'grey triangle'
    assert not torch.allclose(first[1].scores, second[1].scores)  # the phrase matters
    assert stamps == {f: os.stat(osp.join(wd, f)).st_mtime_ns for f in os.listdir(wd)}


def test_more_prompts_than_the_profile_run_in_chunks(tiny_deployment, deployed):
    texts = ['red circle', 'blue square', 'green triangle', 'yellow circle', 'purple disc',
             'grey square']
    assert len(texts) > deployed.max_prompts == 4
    assert_parity(tiny_deployment.model, deployed, image(4), sample(texts))
    token_ids = deployed.tokenizer(texts)
    with pytest.raises(ValueError, match='at most 4'):
        deployed.graphs['text_tower'](token_ids=token_ids)


def test_fewer_prompts_per_run_bound_memory_and_give_the_same_outputs(tiny_deployment):
    small = DeployedSAM3(tiny_deployment.cfg, tiny_deployment.work_dir, prompts_per_run=1)
    assert small.max_prompts == 1
    assert_parity(tiny_deployment.model, small, image(6),
                  sample(['red circle', 'blue square', 'green triangle']))
    # never above what the graphs were exported for
    assert DeployedSAM3(tiny_deployment.cfg, tiny_deployment.work_dir,
                        prompts_per_run=64).max_prompts == 4
    with pytest.raises(ValueError, match='prompts_per_run must be None or an int >= 1'):
        DeployedSAM3(tiny_deployment.cfg, tiny_deployment.work_dir, prompts_per_run=0)


# ------------------------------------------------------------------------------- bad input
def test_wrong_image_size_names_the_fix(deployed):
    with pytest.raises(ValueError, match='exported for a 168x168 image.*140x140'):
        deployed.predict(image(0, size=140), [sample(['red circle'])])


def test_token_ids_longer_than_the_context(deployed):
    with pytest.raises(ValueError, match='exactly 32.*SAM3Tokenizer'):
        deployed.encode_token_ids(torch.ones(2, 40, dtype=torch.long))


def test_missing_graph_file(tiny_deployment, tmp_path):
    wd = tiny_deployment.work_dir
    with pytest.raises(ValueError, match='prompt_decoder graph is missing'):
        DeployedSAM3(tiny_deployment.cfg, [osp.join(wd, 'vision_tower.onnx'),
                                           osp.join(wd, 'text_tower.onnx')])
    with pytest.raises(FileNotFoundError, match='graph file not found'):
        DeployedSAM3(tiny_deployment.cfg, [osp.join(wd, 'vision_tower.onnx'),
                                           osp.join(str(tmp_path), 'prompt_decoder.onnx'),
                                           osp.join(wd, MANIFEST_NAME)])
    with pytest.raises(FileNotFoundError, match='export the graphs first'):
        DeployedSAM3(tiny_deployment.cfg, str(tmp_path))


def test_mismatched_graph_file(tiny_deployment, tmp_path):
    wd = tiny_deployment.work_dir
    for name in ('text_tower.onnx', 'prompt_decoder.onnx', MANIFEST_NAME):
        shutil.copy(osp.join(wd, name), tmp_path / name)
    shutil.copy(osp.join(wd, 'text_tower.onnx'), tmp_path / 'vision_tower.onnx')
    with pytest.raises(ValueError, match='is not the vision_tower graph'):
        DeployedSAM3(tiny_deployment.cfg, str(tmp_path))


def test_cache_of_another_model_is_refused(tiny_deployment, bpe_path, tmp_path):
    from deploy_test_utils import build_tiny_model
    other, _ = build_tiny_model(bpe_path, seed=1)
    path = str(tmp_path / 'other.npz')
    TextFeatureCache.from_model(other, ['red circle']).save(path)
    with pytest.raises(ValueError, match='another text tower.*encode_texts.py'):
        DeployedSAM3(tiny_deployment.cfg, tiny_deployment.work_dir, text_cache=path)


def test_external_data_export_runs_and_is_readable_like_the_graph(tiny_deployment, tmp_path):
    """The external-data path the full-size towers take (tested here on the tiny model by
    lowering the threshold to 0 MiB): weights in ``<graph>.onnx.data`` with the graph file's
    permissions, and the same outputs on ONNX Runtime."""
    from mmsam3.deploy import export_sam3_graphs, load_deploy_cfg
    cfg = load_deploy_cfg(tiny_deployment.deploy_cfg)
    cfg.codebase_config.sam3.external_data_mib = 0
    work_dir = str(tmp_path / 'external')
    manifest = export_sam3_graphs(cfg, tiny_deployment.model, work_dir)
    for name, entry in manifest['graphs'].items():
        assert entry['external_data'], name
        path = osp.join(work_dir, entry['file'])
        assert os.stat(path + '.data').st_mode == os.stat(path).st_mode
        assert os.path.getsize(path + '.data') > os.path.getsize(path) / 10
    deployed = DeployedSAM3(tiny_deployment.cfg, work_dir)
    assert_parity(tiny_deployment.model, deployed, image(3), sample(['red circle', 'dog']))
