"""tools/test.py: ``--batch-size N`` gives the detections of batch 1; ``--dtype bf16`` is close."""
import os
import os.path as osp
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py')


def _run(cmd, cwd, timeout=600):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def shapes_and_ckpt(tmp_path_factory, bpe_path):
    import mmsam3  # noqa: F401
    from mmsam3.testing.random_weights import randomize_parameters
    from mmsam3.testing.tiny_model import build_tiny_sam3

    root = str(tmp_path_factory.mktemp('shapes'))
    rc, out = _run([sys.executable,
                    osp.join(REPO, 'tools/dataset_converters/make_shapes_dataset.py'), root,
                    '--train', '1', '--val', '4', '--size', '168'], cwd=root)
    assert rc == 0, out
    model = build_tiny_sam3(bpe_path)
    randomize_parameters(model, seed=0)
    ckpt = osp.join(root, 'tiny.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return root + '/', ckpt


def _test(root, ckpt, bpe_path, work, extra):
    ann = root + 'valid/_annotations.coco.json'
    os.makedirs(work, exist_ok=True)
    out = osp.join(work, 'results.pkl')
    rc, log = _run([sys.executable, osp.join(REPO, 'tools/test.py'), CONFIG, ckpt,
                    '--work-dir', work, '--out', out] + extra + [
                        '--cfg-options', f'test_dataloader.dataset.data_root={root}',
                        f'test_evaluator.0.ann_file={ann}', f'test_evaluator.1.ann_file={ann}',
                        f'model.tokenizer.bpe_path={bpe_path}', 'test_dataloader.num_workers=0',
                        'test_dataloader.persistent_workers=False'], cwd=work)
    assert rc == 0, log[-3000:]
    with open(out, 'rb') as f:
        return {r['img_id']: r['pred_instances'] for r in pickle.load(f)}, log


@pytest.mark.slow  # three tools/test.py processes: about 2 min on an idle 2-core machine
def test_batched_and_bf16_test_tool(shapes_and_ckpt, bpe_path, tmp_path):
    root, ckpt = shapes_and_ckpt
    single, _ = _test(root, ckpt, bpe_path, str(tmp_path / 'bs1'), ['--batch-size', '1'])
    batched, log = _test(root, ckpt, bpe_path, str(tmp_path / 'bs4'), ['--batch-size', '4'])
    assert 'coco/bbox_mAP:' in log
    assert sorted(single) == sorted(batched) and len(single) == 4
    for img_id, a in single.items():
        b = batched[img_id]
        np.testing.assert_array_equal(a['labels'].numpy(), b['labels'].numpy())
        np.testing.assert_allclose(a['scores'].numpy(), b['scores'].numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(a['bboxes'].numpy(), b['bboxes'].numpy(), rtol=0, atol=1e-3)
    bf16, _ = _test(root, ckpt, bpe_path, str(tmp_path / 'bf16'),
                    ['--batch-size', '4', '--dtype', 'bf16'])
    for img_id, a in single.items():
        b = bf16[img_id]
        assert b['scores'].dtype == torch.float32
        # sorted scores per image: within the bf16 tolerance of tests/test_apis (1e-2)
        diff = (a['scores'].sort().values - b['scores'].sort().values).abs().max()
        assert 0 < float(diff) < 1e-2


def test_test_tool_rejects_bad_dtype_and_batch_size(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location('mmsam3_test_tool',
                                                  osp.join(REPO, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)

    with pytest.raises(SystemExit):
        test_tool.parse_args(['cfg.py', 'ckpt.pth', '--dtype', 'int8'])
    assert 'unsupported inference dtype' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        test_tool.parse_args(['cfg.py', 'ckpt.pth', '--batch-size', '0'])
    assert '--batch-size must be >= 1' in capsys.readouterr().err
