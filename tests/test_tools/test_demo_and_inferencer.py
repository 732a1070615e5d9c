"""People-facing inference: tools/demo.py and mmdet's DetInferencer with `texts=`."""
import json
import os.path as osp
import subprocess
import sys

import cv2
import numpy as np
import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.fixture
def tiny_cfg(tmp_path, bpe_path):
    cfg = tmp_path / 'tiny_infer.py'
    cfg.write_text(
        f"_base_ = ['{REPO}/configs/_base_/models/sam3_tiny.py',\n"
        f"          '{REPO}/configs/_base_/datasets/sam3_coco_prompt.py',\n"
        f"          '{REPO}/configs/_base_/default_runtime.py']\n"
        f"model = dict(tokenizer=dict(bpe_path='{bpe_path}'))\n"
        "test_pipeline = [dict(type='LoadImageFromFile'),\n"
        "                 dict(type='Resize', scale=(168, 168), keep_ratio=False),\n"
        "                 dict(type='PackSAM3Inputs')]\n"
        "test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n")
    return str(cfg)


@pytest.fixture
def image(tmp_path):
    img = np.zeros((100, 150, 3), np.uint8)
    img[20:60, 30:90] = (0, 0, 255)
    path = str(tmp_path / 'shapes.jpg')
    cv2.imwrite(path, img)
    return path


def test_demo_writes_picture_and_json(tiny_cfg, image, tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/demo.py'), image, tiny_cfg, '--texts', 'red box',
         'circle', '--boxes', '30', '20', '90', '60', '--score-thr', '0', '--out-dir', str(out)],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pic = cv2.imread(str(out / 'shapes.jpg'))
    assert pic is not None and pic.shape == (100, 150, 3)
    result = json.loads((out / 'shapes.json').read_text())
    assert result['prompts'] == ['red box', 'circle']
    inst = result['instances']
    phrases = [i['phrase'] for i in inst]  # --score-thr 0: all 20 queries of each prompt
    assert (phrases.count('red box'), phrases.count('circle')) == (20, 20)
    assert all(i['mask']['size'] == [100, 150] for i in inst)
    boxes = np.array([i['bbox'] for i in inst])  # xyxy in the 150 x 100 image
    assert boxes.shape == (40, 4) and (boxes >= 0).all()
    assert (boxes[:, 0::2] <= 150).all() and (boxes[:, 1::2] <= 100).all()


def test_demo_rejects_bad_boxes(tiny_cfg, image):
    proc = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools/demo.py'), image, tiny_cfg, '--boxes', '1', '2'],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and 'groups of 4' in proc.stderr


# mmdet / mmengine warn about what this test does on purpose: no checkpoint (so no class names
# or palette), no visualizer save_dir, and a random model's boxes and masks reaching the border.
@pytest.mark.filterwarnings('ignore:Checkpoint is not loaded:UserWarning:mmdet',
                            'ignore:weights is None, use COCO classes:UserWarning:mmdet',
                            'ignore:palette does not exist:UserWarning:mmdet',
                            'ignore:Failed to add .*LocalVisBackend:UserWarning:mmengine',
                            'ignore:Warning. The (bbox|polygon) is out of bounds:UserWarning')
def test_det_inferencer_with_texts(tiny_cfg, image, tmp_path):
    import mmsam3  # noqa: F401
    from mmdet.apis import DetInferencer

    inferencer = DetInferencer(model=tiny_cfg, weights=None, device='cpu', show_progress=False)
    res = inferencer(image, texts='red box . circle', out_dir=str(tmp_path / 'inf'),
                     pred_score_thr=0.0, no_save_pred=False)
    pred = res['predictions'][0]
    assert len(pred['scores']) == 40  # 2 prompts x 20 queries of the tiny model
    assert np.bincount(pred['labels']).tolist() == [20, 20]
    assert osp.isfile(tmp_path / 'inf' / 'vis' / 'shapes.jpg')


# --------------------------------------------------------------------------- interactive demo
@pytest.fixture
def interactive_cfg(tmp_path, bpe_path):
    cfg = tmp_path / 'tiny_interactive_infer.py'
    cfg.write_text(
        f"_base_ = ['{REPO}/configs/_base_/models/sam3_tiny_interactive.py',\n"
        f"          '{REPO}/configs/_base_/datasets/sam3_coco_prompt.py',\n"
        f"          '{REPO}/configs/_base_/default_runtime.py']\n"
        f"model = dict(tokenizer=dict(bpe_path='{bpe_path}'))\n"
        "test_pipeline = [dict(type='LoadImageFromFile'),\n"
        "                 dict(type='Resize', scale=(168, 168), keep_ratio=False),\n"
        "                 dict(type='PackSAM3Inputs')]\n"
        "test_dataloader = dict(dataset=dict(pipeline=test_pipeline))\n")
    return str(cfg)


def _demo(*argv):
    return subprocess.run([sys.executable, osp.join(REPO, 'tools/demo.py'), *map(str, argv)],
                          capture_output=True, text=True, timeout=300)


def test_demo_clicks_and_box_write_the_mask_picture(interactive_cfg, image, tmp_path):
    out = tmp_path / 'clicks'
    proc = _demo(image, interactive_cfg, '--points', '60,40', '--out-dir', out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    pic = cv2.imread(str(out / 'shapes.jpg'))
    assert pic is not None and pic.shape == (100, 150, 3)
    result = json.loads((out / 'shapes.json').read_text())
    assert result['points'] == [[60.0, 40.0]] and result['point_labels'] == [1]
    assert len(result['masks']) == 3  # one click: three candidates
    assert all(m['mask']['size'] == [100, 150] for m in result['masks'])

    out2 = tmp_path / 'box'
    proc = _demo(image, interactive_cfg, '--box', '30,20,90,60', '--points', '60,40',
                 '120,80,0', '--out-dir', out2)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((out2 / 'shapes.json').read_text())
    assert result['box'] == [30.0, 20.0, 90.0, 60.0] and result['point_labels'] == [1, 0]
    assert len(result['masks']) == 1
    assert cv2.imread(str(out2 / 'shapes.jpg')).shape == (100, 150, 3)


def test_demo_click_errors(interactive_cfg, tiny_cfg, image, tmp_path, capsys):
    sys.path.insert(0, osp.join(REPO, 'tools'))
    import demo

    def refused(*argv):
        with pytest.raises(SystemExit) as exc:
            demo.main([str(a) for a in argv])
        assert exc.value.code not in (0, None)
        return str(exc.value.code) + capsys.readouterr().err

    assert 'must be 1 (positive) or 0' in refused(image, interactive_cfg, '--points', '60,40,2')
    assert 'x,y or x,y,label' in refused(image, interactive_cfg, '--points', '60')
    assert 'x0,y0,x1,y1' in refused(image, interactive_cfg, '--box', '30,20,90')
    assert 'separate runs' in refused(image, interactive_cfg, '--points', '60,40', '--texts',
                                      'red box')
    assert 'outside the 150x100' in refused(image, interactive_cfg, '--points', '500,40',
                                            '--device', 'cpu', '--out-dir', tmp_path / 'x')
    assert not (tmp_path / 'x').exists()
    assert 'no interactive head' in refused(image, tiny_cfg, '--points', '60,40', '--device',
                                            'cpu', '--out-dir', tmp_path / 'y')
