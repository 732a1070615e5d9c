"""Confusion matrix of SAM 3 detections (mmdet's ``confusion_matrix``) from ``test.py --out``.

    python tools/test.py CONFIG CKPT --out results.pkl
    python tools/analysis_tools/confusion_matrix.py CONFIG results.pkl SAVE_DIR \
        [--score-thr 0.3] [--tp-iou-thr 0.5] [--nms-iou-thr 0.5] [--show]

A SAM 3 prediction's label is the category of the prompt that produced it, so row = the
ground-truth category, column = the category whose prompt fired. The matrix is
``(C + 1, C + 1)``, the last row / column being background:

- detections (score >= ``--score-thr``) are taken in descending score order; one that
  overlaps a not yet matched ground truth of its own category with IoU >= ``--tp-iou-thr``
  matches the best-overlapping one and counts at ``[gt, gt]``;
- one that overlaps only ground truths of its category that are already matched (a duplicate)
  or nothing at all counts at ``[background, det]``;
- otherwise every ground truth of another category it overlaps that much counts at
  ``[gt, det]`` (the prompt fired on the wrong object);
- a ground truth no detection of its own category found counts at ``[gt, background]``.

Crowd ground truths (``ignore_flag``) are left out. Ground truth comes from the config's test
dataset (``test_dataloader.dataset``), matched to the predictions by ``img_id``. Writes
``confusion_matrix.png`` (rows normalised to percent, as mmdet draws it) and
``confusion_matrix.csv`` (raw counts) to ``SAVE_DIR``.
"""
import argparse
import csv
import os
import os.path as osp
import sys
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import mmsam3  # noqa: E402,F401  (registers modules)


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of xyxy boxes ``a`` (N, 4) and ``b`` (M, 4) -> (N, M)."""
    from torchvision.ops import box_iou as tv_box_iou
    return tv_box_iou(torch.as_tensor(a, dtype=torch.float64).reshape(-1, 4),
                      torch.as_tensor(b, dtype=torch.float64).reshape(-1, 4)).numpy()


def analyze_image(matrix: np.ndarray, gt_bboxes: np.ndarray, gt_labels: np.ndarray,
                  det_bboxes: np.ndarray, det_scores: np.ndarray, det_labels: np.ndarray,
                  score_thr: float = 0.3, tp_iou_thr: float = 0.5,
                  nms_iou_thr: Optional[float] = None) -> None:
    """Add one image to ``matrix`` (C + 1, C + 1) in place (rules in the module docstring)."""
    bg = matrix.shape[0] - 1
    found = np.zeros(len(gt_labels), bool)
    keep = det_scores >= score_thr
    det_bboxes, det_scores, det_labels = det_bboxes[keep], det_scores[keep], det_labels[keep]
    for label in np.unique(det_labels):
        sel = np.flatnonzero(det_labels == label)
        sel = sel[np.argsort(-det_scores[sel], kind='stable')]
        boxes, scores = det_bboxes[sel], det_scores[sel]
        if nms_iou_thr:
            from torchvision.ops import nms
            order = nms(torch.as_tensor(boxes, dtype=torch.float32),
                        torch.as_tensor(scores, dtype=torch.float32), nms_iou_thr).numpy()
            boxes = boxes[order]
        ious = box_iou(boxes, gt_bboxes) if len(gt_bboxes) else np.zeros((len(boxes), 0))
        for i in range(len(boxes)):
            hits = ious[i] >= tp_iou_thr
            same = hits & (gt_labels == label)
            cand = np.flatnonzero(same & ~found)
            if len(cand):
                j = cand[np.argmax(ious[i, cand])]
                found[j] = True
                matrix[label, label] += 1
            elif same.any() or not hits.any():
                matrix[bg, label] += 1
            else:
                for j in np.flatnonzero(hits):
                    matrix[gt_labels[j], label] += 1
    for j in np.flatnonzero(~found):
        matrix[gt_labels[j], bg] += 1


def calculate_confusion_matrix(dataset, results: Sequence[dict], score_thr: float = 0.3,
                               tp_iou_thr: float = 0.5,
                               nms_iou_thr: Optional[float] = None) -> np.ndarray:
    """``(C + 1, C + 1)`` counts over the images of ``results`` (``tools/test.py --out``)."""
    num_classes = len(dataset.metainfo['classes'])
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    infos: Dict[int, dict] = {}
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        infos[info['img_id']] = info
    for n, res in enumerate(results):
        img_id = res.get('img_id')
        if img_id not in infos:
            raise KeyError(f'prediction {n} is for img_id {img_id!r}, which the test dataset of '
                           'the config does not hold; pass the config the predictions were '
                           'made with (and the same --cfg-options)')
        pred = res.get('pred_instances')
        if pred is None or any(k not in pred for k in ('bboxes', 'scores', 'labels')):
            raise KeyError(f'prediction {n} (img_id {img_id}) has no pred_instances with '
                           'bboxes / scores / labels; is it a tools/test.py --out pickle?')
        labels = _numpy(pred['labels']).astype(np.int64).reshape(-1)
        if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f'prediction {n} (img_id {img_id}) has labels {sorted(set(labels))} '
                             f'outside the {num_classes} classes of the dataset')
        gts = [g for g in infos[img_id]['instances'] if not g.get('ignore_flag', 0)]
        analyze_image(
            matrix,
            np.array([g['bbox'] for g in gts], np.float64).reshape(-1, 4),
            np.array([g['bbox_label'] for g in gts], np.int64),
            _numpy(pred['bboxes']).astype(np.float64).reshape(-1, 4),
            _numpy(pred['scores']).astype(np.float64).reshape(-1), labels, score_thr, tp_iou_thr,
            nms_iou_thr)
    return matrix


def save_csv(matrix: np.ndarray, labels: List[str], path: str) -> None:
    with open(path, 'w', newline='') as f:
        w = csv.writer(f)
        w.writerow(['gt \\ pred'] + labels)
        for name, row in zip(labels, matrix):
            w.writerow([name] + [int(x) for x in row])


def plot_confusion_matrix(matrix: np.ndarray, labels: List[str], save_path: Optional[str],
                          show: bool = False, color_theme: str = 'plasma') -> None:
    """Rows normalised to percent, one cell a count, like mmdet's figure."""
    import matplotlib
    if not show:
        matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    sums = matrix.sum(axis=1, keepdims=True)
    percent = np.divide(matrix * 100.0, sums, out=np.zeros(matrix.shape), where=sums > 0)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(0.6 * n + 3, 0.6 * n + 2.5), dpi=120)
    im = ax.imshow(percent, cmap=plt.get_cmap(color_theme), vmin=0, vmax=100)
    fig.colorbar(im, ax=ax, label='% of the row')
    ax.set_xticks(range(n), labels, rotation=45, ha='right')
    ax.set_yticks(range(n), labels)
    ax.set_xlabel('prompt that fired (prediction)')
    ax.set_ylabel('ground truth')
    ax.set_title('Normalized confusion matrix')
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f'{percent[i, j]:.0f}', ha='center', va='center', fontsize=7,
                    color='w' if percent[i, j] < 50 else 'k')
    fig.tight_layout()
    if save_path:
        fig.savefig(save_path)
    if show:
        plt.show()
    plt.close(fig)


def parse_args(argv=None):
    from mmengine.config import DictAction

    parser = argparse.ArgumentParser(description='Confusion matrix of SAM 3 detections')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('prediction_path', help='the .pkl that tools/test.py --out wrote')
    parser.add_argument('save_dir', help='directory for confusion_matrix.{png,csv}')
    parser.add_argument('--show', action='store_true', help='show the figure')
    parser.add_argument('--color-theme', default='plasma', help='matplotlib colour map')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--tp-iou-thr', type=float, default=0.5, help='IoU of a match')
    parser.add_argument('--nms-iou-thr', type=float, default=None,
                        help='extra per-class NMS before matching (SAM 3 has none)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings in the config, key=value pairs')
    return parser.parse_args(argv)


def main(argv=None) -> np.ndarray:
    from mmdet.registry import DATASETS
    from mmengine.config import Config
    from mmengine.fileio import load
    from mmengine.registry import init_default_scope

    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmdet'))
    if not osp.isfile(args.prediction_path):
        raise FileNotFoundError(f'{args.prediction_path} does not exist; write it with '
                                'tools/test.py CONFIG CKPT --out results.pkl')
    results = load(args.prediction_path)
    dataset_cfg = cfg.test_dataloader.dataset
    dataset = DATASETS.build(dataset_cfg)
    matrix = calculate_confusion_matrix(dataset, results, args.score_thr, args.tp_iou_thr,
                                        args.nms_iou_thr)
    labels = list(dataset.metainfo['classes']) + ['background']
    os.makedirs(args.save_dir, exist_ok=True)
    save_csv(matrix, labels, osp.join(args.save_dir, 'confusion_matrix.csv'))
    plot_confusion_matrix(matrix, labels, osp.join(args.save_dir, 'confusion_matrix.png'),
                          args.show, args.color_theme)
    print(f'confusion matrix of {len(results)} images -> {args.save_dir}/confusion_matrix.png '
          '(.csv: raw counts)')
    return matrix


if __name__ == '__main__':
    main()
