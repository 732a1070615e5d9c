"""tools/analysis_tools/browse_dataset.py on the synthetic shapes data through the tiny config."""
import importlib.util
import os.path as osp

import mmcv
import numpy as np
import pytest
import torch
# tools/analysis_tools is on sys.path through tests/conftest.py.
from browse_dataset import (NEGATIVE_EXEMPLAR_COLOR, PAD_ALPHA, PAD_COLOR,
                            POSITIVE_EXEMPLAR_COLOR, TARGET_COLOR, draw_sample, main)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(REPO, 'configs', 'sam3/sam3_tiny_scratch_1xb2-5k_shapes.py')
SIZE = 168


@pytest.fixture(scope='module')
def shapes_root(tmp_path_factory):
    path = osp.join(REPO, 'tools', 'dataset_converters', 'make_shapes_dataset.py')
    spec = importlib.util.spec_from_file_location('make_shapes_dataset', path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    root = str(tmp_path_factory.mktemp('shapes'))
    mod.make_shapes_dataset(root, 3, 1, seed=0, size=SIZE, radius=(0.15, 0.25),
                            preset='distinct')
    return root + '/'


def _near(pixels, color, tol=40):
    return (np.abs(pixels.astype(int) - np.array(color)).max(-1) <= tol)


def _edge_fraction(panel, box, color):
    """Best fraction of pixels near ``color`` on the bottom edge of ``box`` (rows y2-1..y2+1;
    the phrase is written at the top)."""
    x1, _, x2, y2 = (int(round(float(v))) for v in box)
    xs = slice(x1 + 3, x2 - 3)
    return max(_near(panel[y, xs], color).mean() for y in (y2 - 1, y2, y2 + 1) if y < SIZE)


def _sample(shapes_root):
    from mmdet.registry import DATASETS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    cfg = Config.fromfile(CONFIG)
    ds_cfg = cfg.train_dataloader.dataset
    ds_cfg.data_root = shapes_root
    for t in ds_cfg.pipeline:
        if t['type'] == 'RandomChoiceResize':
            t['scales'] = [(140, 140)]  # 28 px of padding on the 168 canvas
    ds_cfg.pipeline.insert(-1, dict(type='TextQueryToVisual', probability=1.0))
    init_default_scope('mmdet')
    dataset = DATASETS.build(ds_cfg)
    np.random.seed(0)  # the pipeline's offsets and exemplar choice
    torch.manual_seed(0)
    item = dataset[0]
    return item['inputs'], item['data_samples']


def test_panels_show_targets_exemplars_and_padding(shapes_root):
    from mmdet.visualization import DetLocalVisualizer

    inputs, sample = _sample(shapes_root)
    meta = sample.metainfo
    labels = sample.gt_instances.labels.tolist()
    pos = next(p for p, lab in enumerate(meta['prompt_labels']) if lab in labels)
    neg = next(p for p, lab in enumerate(meta['prompt_labels']) if lab not in labels)
    # TextQueryToVisual gave the positive prompt one of its targets as exemplar; move it off the
    # target's edges, and give the negative prompt a negative exemplar
    top, _, left, _ = (int(v) for v in meta['pad_param'])
    assert meta['prompt_boxes'][pos].shape == (1, 4) and meta['prompt_box_labels'][pos] == 1
    pos_box = torch.tensor([[left + 10., top + 10., left + 50., top + 60.]])
    neg_box = torch.tensor([[left + 30., top + 40., left + 90., top + 100.]])
    boxes, box_labels = list(meta['prompt_boxes']), list(meta['prompt_box_labels'])
    boxes[pos], boxes[neg], box_labels[neg] = pos_box, neg_box, torch.tensor([0])
    sample.set_metainfo(dict(prompt_boxes=boxes, prompt_box_labels=box_labels))

    vis = DetLocalVisualizer.get_instance('test_browse_dataset')
    grid = draw_sample(vis, inputs, sample, pad_size_divisor=14, max_cols=4)
    num = len(meta['texts'])
    assert grid.shape == (-(-num // 4) * SIZE, min(num, 4) * SIZE, 3)

    def panel(p):
        r, c = divmod(p, 4)
        return grid[r * SIZE:(r + 1) * SIZE, c * SIZE:(c + 1) * SIZE]

    raw = inputs.permute(1, 2, 0).numpy()[..., ::-1]  # BGR -> RGB
    target = sample.gt_instances.bboxes.tensor[labels.index(meta['prompt_labels'][pos])]
    assert _edge_fraction(panel(pos), target, TARGET_COLOR) > 0.8
    assert _edge_fraction(raw, target, TARGET_COLOR) < 0.2  # the colour comes from the drawing
    # another prompt's panel does not show this target
    assert _edge_fraction(panel(neg), target, TARGET_COLOR) < 0.2
    # the positive exemplar (TextQueryToVisual) and the negative one, dashed
    assert _edge_fraction(panel(pos), pos_box[0], POSITIVE_EXEMPLAR_COLOR) > 0.3
    assert _edge_fraction(panel(neg), neg_box[0], NEGATIVE_EXEMPLAR_COLOR) > 0.3
    assert _edge_fraction(panel(pos), neg_box[0], NEGATIVE_EXEMPLAR_COLOR) == 0
    # padding: 28 px around the 140 px image, tinted; image pixels away from drawings untouched
    pad_mask = np.ones((SIZE, SIZE), bool)
    pad_mask[top:top + 140, left:left + 140] = False
    tinted = ((1 - PAD_ALPHA) * raw[pad_mask] + PAD_ALPHA * np.array(PAD_COLOR)).astype(np.uint8)
    p = panel(neg)
    assert np.abs(p[pad_mask][-500:].astype(int) - tinted[-500:]).max() <= 2
    y, x = top + 139, left + 139  # bottom-right image corner, far from boxes and text
    assert np.array_equal(p[y - 3:y, x - 3:x], raw[y - 3:y, x - 3:x])


def test_cli_writes_one_picture_per_sample(shapes_root, tmp_path):
    out_dir = str(tmp_path / 'browse')
    written = main([CONFIG, '--output-dir', out_dir, '--not-show', '--cfg-options',
                    f'train_dataloader.dataset.data_root={shapes_root}'])
    assert len(written) == 3
    for path in written:
        img = mmcv.imread(path)
        # 4 categories, all prompted (num_negative_prompts=-1): one row of 4 panels
        assert img.shape == (SIZE, 4 * SIZE, 3)
        assert _near(img[..., ::-1], TARGET_COLOR, tol=10).sum() > 50


def test_not_show_needs_output_dir():
    with pytest.raises(SystemExit):
        main([CONFIG, '--not-show'])
