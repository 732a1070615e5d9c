"""tools/analysis_tools/confusion_matrix.py on a hand-made prediction pickle with known counts."""
import csv
import json
import os.path as osp
import pickle

import numpy as np
import pytest
import torch
# tools/analysis_tools is on sys.path through tests/conftest.py.
from confusion_matrix import main

from tests.utils import write_coco_split

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py')
CAR, BUS, BG = 0, 1, 2


@pytest.fixture()
def data(tmp_path):
    root = str(tmp_path / 'data')
    # image 1: a car at (10, 10)-(30, 30) and a bus at (60, 60)-(85, 85); image 2: a bus
    write_coco_split(osp.join(root, 'valid'), [(1, 'car'), (2, 'bus')],
                     [[(1, [10, 10, 20, 20]), (2, [60, 60, 25, 25])], [(2, [5, 5, 30, 30])]],
                     size=96)
    preds = [
        dict(img_id=1, pred_instances=dict(
            bboxes=torch.tensor([[10., 10., 30., 30.],   # car prompt on the car: TP
                                 [11., 11., 30., 30.],   # duplicate of it: background FP
                                 [10., 10., 30., 30.],   # bus prompt on the car: confusion
                                 [60., 60., 85., 85.],   # bus prompt on the bus, score too low
                                 [40., 40., 50., 50.]]),  # car prompt on nothing
            scores=torch.tensor([0.9, 0.8, 0.7, 0.1, 0.95]),
            labels=torch.tensor([CAR, CAR, BUS, BUS, CAR]))),
        dict(img_id=2, pred_instances=dict(
            bboxes=torch.tensor([[5., 5., 35., 35.]]), scores=torch.tensor([0.6]),
            labels=torch.tensor([BUS]))),
    ]
    pkl = str(tmp_path / 'results.pkl')
    with open(pkl, 'wb') as f:
        pickle.dump(preds, f)
    return root, pkl, preds


def _options(root):
    return ['--cfg-options', f'test_dataloader.dataset.data_root={root}/']


def test_counts(data, tmp_path):
    root, pkl, _ = data
    out = str(tmp_path / 'cm')
    matrix = main([CONFIG, pkl, out, '--score-thr', '0.3'] + _options(root))
    expected = np.zeros((3, 3), int)
    expected[CAR, CAR] = 1      # car found by the car prompt
    expected[BG, CAR] = 2       # duplicate + detection on nothing
    expected[CAR, BUS] = 1      # the bus prompt fired on the car
    expected[BUS, BUS] = 1      # image 2
    expected[BUS, BG] = 1       # image 1's bus missed (its detection is below the threshold)
    np.testing.assert_array_equal(matrix, expected)
    with open(osp.join(out, 'confusion_matrix.csv')) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ['gt \\ pred', 'car', 'bus', 'background']
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:]], int), expected)
    assert osp.getsize(osp.join(out, 'confusion_matrix.png')) > 1000


def test_thresholds_and_nms(data, tmp_path):
    root, pkl, _ = data
    low = main([CONFIG, pkl, str(tmp_path / 'a'), '--score-thr', '0.05'] + _options(root))
    assert low[BUS, BUS] == 2 and low[BUS, BG] == 0  # the low-score bus detection now counts
    nms = main([CONFIG, pkl, str(tmp_path / 'b'), '--nms-iou-thr', '0.5'] + _options(root))
    assert nms[BG, CAR] == 1  # the duplicate is suppressed
    strict = main([CONFIG, pkl, str(tmp_path / 'c'), '--tp-iou-thr', '0.99'] + _options(root))
    assert strict[CAR, CAR] == 1 and strict[BUS, BUS] == 1  # exact boxes still match
    assert strict[BG, CAR] == 2 and strict[CAR, BUS] == 1


def test_prediction_of_another_dataset(data, tmp_path):
    root, pkl, preds = data
    preds[1]['img_id'] = 7
    with open(pkl, 'wb') as f:
        pickle.dump(preds, f)
    with pytest.raises(KeyError, match='img_id 7.*pass the config the predictions were made'):
        main([CONFIG, pkl, str(tmp_path / 'cm')] + _options(root))
    with pytest.raises(FileNotFoundError, match='tools/test.py CONFIG CKPT --out'):
        main([CONFIG, str(tmp_path / 'none.pkl'), str(tmp_path / 'cm')] + _options(root))


def test_on_a_real_test_py_dump(bpe_path, tmp_path):
    """``tools/test.py --out`` of the random tiny model -> the matrix keeps its invariants."""
    import importlib.util

    from get_flops import build_model

    spec = importlib.util.spec_from_file_location(
        'make_shapes_dataset', osp.join(REPO, 'tools', 'dataset_converters',
                                        'make_shapes_dataset.py'))
    shapes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shapes)
    root = str(tmp_path / 'shapes')
    shapes.make_shapes_dataset(root, 1, 2, seed=0, size=168, radius=(0.15, 0.25),
                               preset='distinct')
    torch.manual_seed(0)
    model, _ = build_model(CONFIG, {'model.tokenizer.bpe_path': bpe_path})
    ckpt = str(tmp_path / 'random.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), ckpt)
    ann = f'{root}/valid/_annotations.coco.json'
    options = [f'test_dataloader.dataset.data_root={root}/', f'test_evaluator.0.ann_file={ann}',
               f'test_evaluator.1.ann_file={ann}', f'model.tokenizer.bpe_path={bpe_path}',
               'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False']
    spec = importlib.util.spec_from_file_location('mmsam3_test_tool',
                                                  osp.join(REPO, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    pkl = str(tmp_path / 'results.pkl')
    test_tool.main([CONFIG, ckpt, '--out', pkl, '--work-dir', str(tmp_path / 'work'),
                    '--cfg-options'] + options)
    with open(pkl, 'rb') as f:
        dumped = pickle.load(f)
    assert len(dumped) == 2

    thr = 0.2
    matrix = main([CONFIG, pkl, str(tmp_path / 'cm'), '--score-thr', str(thr),
                   '--cfg-options'] + options)
    with open(ann) as f:
        coco = json.load(f)
    cat_index = {c['id']: i for i, c in enumerate(coco['categories'])}
    num_gt = np.bincount([cat_index[a['category_id']] for a in coco['annotations']],
                         minlength=len(cat_index))
    bg = len(cat_index)
    # every ground truth is found by its own prompt or missed, once
    np.testing.assert_array_equal(matrix.diagonal()[:bg] + matrix[:bg, bg], num_gt)
    # every detection above the threshold lands somewhere (confusions can count it twice)
    labels = np.concatenate([d['pred_instances']['labels'][d['pred_instances']['scores'] >= thr]
                             .numpy() for d in dumped])
    dets = np.bincount(labels, minlength=bg)
    assert (matrix[:, :bg].sum(0) >= dets).all() and dets.sum() > 0
