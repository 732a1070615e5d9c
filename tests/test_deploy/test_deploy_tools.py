"""tools/deployment/test.py and encode_texts.py on the tiny model and shapes data."""
import os.path as osp
import pickle

import numpy as np
import pytest
import torch

from deploy_test_utils import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _data_options(root, bpe_options):
    ann = root + 'valid/_annotations.coco.json'
    return [f'test_dataloader.dataset.data_root={root}', f'test_evaluator.0.ann_file={ann}',
            f'test_evaluator.1.ann_file={ann}', 'test_dataloader.num_workers=0',
            'test_dataloader.persistent_workers=False', 'test_dataloader.batch_size=2',
            *bpe_options]


def test_deployed_ap_equals_tools_test(tiny_deployment, shapes_root, tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location('mmsam3_tools_test',
                                                  osp.join(REPO, 'tools', 'test.py'))
    torch_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torch_test)
    options = _data_options(shapes_root, tiny_deployment.cfg_options)
    ref_pkl, dep_pkl = str(tmp_path / 'torch.pkl'), str(tmp_path / 'deployed.pkl')
    ref = torch_test.main([tiny_deployment.model_cfg, tiny_deployment.ckpt, '--work-dir',
                           str(tmp_path / 'torch'), '--out', ref_pkl, '--cfg-options', *options])
    deploy_test = load_tool('test')
    got = deploy_test.main([tiny_deployment.deploy_cfg, tiny_deployment.model_cfg, '--model',
                            tiny_deployment.work_dir, '--work-dir', str(tmp_path / 'deployed'),
                            '--out', dep_pkl, '--cfg-options', *options])
    keys = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50')
    print('AP tools/test.py vs deployed:', {k: (ref[k], got[k]) for k in keys})
    for key in keys:
        assert abs(ref[key] - got[key]) <= 0.005, (key, ref[key], got[key])
    assert any(k.startswith('cgF1') or 'cgf1' in k.lower() for k in got), sorted(got)
    # The same predictions image by image, not only the same summary.
    with open(ref_pkl, 'rb') as f:
        ref_preds = pickle.load(f)
    with open(dep_pkl, 'rb') as f:
        dep_preds = pickle.load(f)
    assert len(ref_preds) == len(dep_preds) == 4
    for a, b in zip(ref_preds, dep_preds):
        pa, pb = a['pred_instances'], b['pred_instances']
        assert len(pa['scores']) == len(pb['scores']) > 0
        np.testing.assert_allclose(np.asarray(pa['scores']), np.asarray(pb['scores']),
                                   atol=1e-4)
        np.testing.assert_allclose(np.asarray(pa['bboxes']), np.asarray(pb['bboxes']),
                                   atol=1e-2)


def test_encode_texts_tool_writes_a_cache_the_deployed_model_uses(tiny_deployment, tmp_path):
    from mmsam3.deploy import DeployedSAM3, TextFeatureCache
    out = str(tmp_path / 'cache.npz')
    phrases = tmp_path / 'phrases.txt'
    phrases.write_text('blue square\n\nred circle\n')
    tool = load_tool('encode_texts')
    tool.main([tiny_deployment.model_cfg, tiny_deployment.ckpt, '--texts', 'green triangle',
               '--texts-file', str(phrases), '--out', out, '--cfg-options',
               *tiny_deployment.cfg_options])
    cache = TextFeatureCache.load(out)
    assert cache.phrases == ['green triangle', 'blue square', 'red circle']
    with torch.no_grad():
        feats, mask = tiny_deployment.model.encode_texts(['red circle'])
    got_feats, got_mask = cache.lookup(['red circle'])
    assert torch.allclose(got_feats, feats, atol=1e-6) and torch.equal(got_mask, mask)
    model = DeployedSAM3(tiny_deployment.cfg, tiny_deployment.work_dir, text_cache=out)
    assert model.text_cache is not None
    with pytest.raises(SystemExit):
        tool.main([tiny_deployment.model_cfg, tiny_deployment.ckpt, '--out', out])
