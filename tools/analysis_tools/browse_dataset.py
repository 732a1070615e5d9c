"""Draw the training samples of a SAM 3 config as the model receives them (after the pipeline).

    python tools/analysis_tools/browse_dataset.py configs/sam3/sam3_tiny_scratch_1xb2-5k_shapes.py \
        --output-dir work_dirs/browse --not-show [--max-samples 20] [--max-cols 4]

One picture per sample, made of one panel per prompt (row-major, ``--max-cols`` panels a row,
each exactly the network-input size ``H x W``, no margins). A panel shows:

- the image as the network sees it (uint8 BGR input turned to RGB; a float input is
  de-normalised with the data preprocessor's mean / std first);
- the padding, tinted blue: the ``RandomOffsetPad`` canvas outside the image (``pad_param``)
  and, below / right of it, the data preprocessor's padding to ``pad_size_divisor``;
- the prompt's targets (the ground-truth instances of its category): masks and boxes in orange;
- its exemplar boxes: positive dashed cyan, negative dashed magenta;
- the phrase and the number of targets ('negative' when none) and exemplars, top left.

Pictures are saved as ``<output-dir>/<image name>.png`` (several samples of one image get
``_1``, ``_2``... suffixes) and shown every ``--show-interval`` seconds unless ``--not-show``.
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional, Sequence

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mmsam3  # noqa: E402,F401  (registers modules)

TARGET_COLOR = (255, 128, 0)
POSITIVE_EXEMPLAR_COLOR = (0, 255, 255)
NEGATIVE_EXEMPLAR_COLOR = (255, 0, 255)
PAD_COLOR = (40, 60, 255)
PAD_ALPHA = 0.5


def input_image(inputs: torch.Tensor, mean: Optional[Sequence[float]] = None,
                std: Optional[Sequence[float]] = None, bgr: bool = True) -> np.ndarray:
    """The packed ``inputs`` (3, H, W) -> RGB uint8 (H, W, 3); float inputs are de-normalised."""
    img = inputs.detach().cpu().float()
    if inputs.is_floating_point() and mean is not None and std is not None:
        img = img * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    img = img.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(img[..., ::-1] if bgr else img)


def padding_mask(meta: dict, canvas_hw: Sequence[int]) -> np.ndarray:
    """(H, W) bool, True on padded pixels: outside ``pad_param``'s image, beyond ``img_shape``."""
    h, w = canvas_hw
    mask = np.ones((h, w), bool)
    img_h, img_w = meta.get('img_shape', (h, w))[:2]
    top, bottom, left, right = (0, 0, 0, 0)
    if meta.get('pad_param') is not None:
        top, bottom, left, right = (int(round(float(v))) for v in meta['pad_param'])
    mask[top:img_h - bottom, left:img_w - right] = False
    return mask


def _as_array(x) -> np.ndarray:
    if hasattr(x, 'tensor'):
        x = x.tensor
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _masks_array(masks, hw) -> Optional[np.ndarray]:
    if masks is None:
        return None
    if hasattr(masks, 'to_ndarray'):
        masks = masks.to_ndarray()
    masks = _as_array(masks).astype(bool)
    out = np.zeros((len(masks), ) + tuple(hw), bool)
    h, w = min(hw[0], masks.shape[1]), min(hw[1], masks.shape[2])
    out[:, :h, :w] = masks[:, :h, :w]
    return out


def draw_prompt(visualizer, image: np.ndarray, pad: np.ndarray, data_sample, p: int) -> np.ndarray:
    """One panel: prompt ``p`` of ``data_sample`` drawn on ``image`` (RGB, (H, W, 3))."""
    meta = data_sample.metainfo
    label = int(meta['prompt_labels'][p])
    canvas = image.copy()
    canvas[pad] = ((1 - PAD_ALPHA) * canvas[pad] + PAD_ALPHA * np.array(PAD_COLOR)).astype(np.uint8)
    visualizer.set_image(canvas)

    gt = data_sample.gt_instances if 'gt_instances' in data_sample else None
    num_targets = 0
    if gt is not None and 'labels' in gt:
        keep = _as_array(gt.labels) == label
        num_targets = int(keep.sum())
        masks = _masks_array(gt.get('masks', None), image.shape[:2])
        if masks is not None and num_targets:
            visualizer.draw_binary_masks(masks[keep], colors=[TARGET_COLOR] * num_targets,
                                         alphas=0.4)
        if num_targets:
            visualizer.draw_bboxes(_as_array(gt.bboxes)[keep].reshape(-1, 4),
                                   edge_colors=[TARGET_COLOR], line_widths=2, alpha=1.0)

    boxes = meta.get('prompt_boxes')
    box_labels = meta.get('prompt_box_labels')
    num_pos = num_neg = 0
    if boxes is not None and len(_as_array(boxes[p]).reshape(-1, 4)):
        b = _as_array(boxes[p]).reshape(-1, 4)
        bl = (np.ones(len(b), int) if box_labels is None else _as_array(box_labels[p]).reshape(-1))
        num_pos, num_neg = int((bl > 0).sum()), int((bl <= 0).sum())
        colors = [POSITIVE_EXEMPLAR_COLOR if x > 0 else NEGATIVE_EXEMPLAR_COLOR for x in bl]
        visualizer.draw_bboxes(b, edge_colors=colors, line_styles='--', line_widths=2, alpha=1.0)

    text = f'{meta["texts"][p]}\n' + (f'{num_targets} target(s)' if num_targets else 'negative')
    if num_pos or num_neg:
        text += f', exemplars +{num_pos} -{num_neg}'
    visualizer.draw_texts(text, np.array([2, 2]), colors=(255, 255, 255),
                          font_sizes=max(7, min(image.shape[:2]) // 20),
                          bboxes=dict(facecolor='black', alpha=0.6, pad=1, edgecolor='none'))
    return visualizer.get_image()


def draw_sample(visualizer, inputs: torch.Tensor, data_sample, mean=None, std=None,
                pad_size_divisor: int = 1, max_cols: int = 4) -> np.ndarray:
    """The picture of one packed sample: its prompt panels in a grid, RGB uint8.

    ``inputs``: (3, H, W) as ``PackSAM3Inputs`` returns it; ``data_sample``: its
    ``DetDataSample`` (metainfo ``texts``, ``prompt_labels``, optional ``prompt_boxes`` /
    ``prompt_box_labels`` / ``pad_param``; ``gt_instances``). The canvas is the input padded
    to a multiple of ``pad_size_divisor``, as the data preprocessor does.
    """
    image = input_image(inputs, mean, std)
    h, w = image.shape[:2]
    d = max(1, int(pad_size_divisor or 1))
    ph, pw = -(-h // d) * d, -(-w // d) * d
    canvas = np.zeros((ph, pw, 3), np.uint8)
    canvas[:h, :w] = image
    pad = padding_mask(data_sample.metainfo, (ph, pw))
    texts = data_sample.metainfo.get('texts') or []
    if not texts:
        panels = [canvas]
    else:
        panels = [draw_prompt(visualizer, canvas, pad, data_sample, p) for p in range(len(texts))]
    cols = max(1, min(len(panels), max_cols))
    rows = -(-len(panels) // cols)
    grid = np.zeros((rows * ph, cols * pw, 3), np.uint8)
    for k, panel in enumerate(panels):
        r, c = divmod(k, cols)
        grid[r * ph:(r + 1) * ph, c * pw:(c + 1) * pw] = panel
    return grid


def parse_args(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description='Browse the training samples of a SAM 3 config')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--output-dir', default=None, help='save the pictures here')
    parser.add_argument('--not-show', action='store_true', help='do not open a window')
    parser.add_argument('--show-interval', type=float, default=2, help='seconds per picture')
    parser.add_argument('--max-samples', type=int, default=None, help='stop after N samples')
    parser.add_argument('--max-cols', type=int, default=4, help='prompt panels per row')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    args = parser.parse_args(argv)
    if args.not_show and args.output_dir is None:
        parser.error('--not-show without --output-dir would draw nothing anyone sees; '
                     'pass --output-dir DIR')
    return args


def main(argv=None):
    """Returns the paths written (empty when only shown)."""
    import mmcv
    from mmdet.registry import DATASETS
    from mmdet.visualization import DetLocalVisualizer
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import ProgressBar

    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    pre = cfg.model.get('data_preprocessor', {})
    visualizer = DetLocalVisualizer.get_instance('mmsam3_browse_dataset')

    total = len(dataset) if args.max_samples is None else min(len(dataset), args.max_samples)
    written, used_names = [], {}
    progress = ProgressBar(total)
    for idx in range(total):
        item = dataset[idx]
        sample = item['data_samples']
        picture = draw_sample(visualizer, item['inputs'], sample, pre.get('mean'), pre.get('std'),
                              pre.get('pad_size_divisor', 1), args.max_cols)
        stem = osp.splitext(osp.basename(sample.metainfo.get('img_path', f'sample_{idx}')))[0]
        count = used_names.get(stem, 0)
        used_names[stem] = count + 1
        name = f'{stem}_{count}' if count else stem
        if args.output_dir is not None:
            os.makedirs(args.output_dir, exist_ok=True)
            out_file = osp.join(args.output_dir, name + '.png')
            mmcv.imwrite(picture[..., ::-1], out_file)
            written.append(out_file)
        if not args.not_show:
            visualizer.show(picture, win_name=name, wait_time=args.show_interval)
        progress.update()
    return written


if __name__ == '__main__':
    main()
