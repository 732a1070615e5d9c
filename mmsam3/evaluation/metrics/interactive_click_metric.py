"""InteractiveClickMetric: interactive segmentation evaluated in clicks (mIoU@k, NoC, NoF).

The model's ``predict`` (:class:`~mmsam3.models.detectors.SAM3Interactive`) runs the click
simulator on every ground-truth instance of an image and stores in each data sample
``click_ious``: a ``(num_objects, num_clicks)`` tensor, the IoU after each click. This metric
gathers those rows over the dataset (and over processes) and reports
:func:`~mmsam3.evaluation.functional.summarize_click_ious` under the prefix ``click``:
``click/mIoU@1`` ... ``click/NoC@85``, ``click/NoC@90``, ``click/NoF@85``, ``click/NoF@90``
(objects that never reach the threshold within ``max_clicks``) and ``click/num_objects``.
"""
from typing import Any, Optional, Sequence

import numpy as np
from mmdet.registry import METRICS
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger

from ..functional.click_metrics import summarize_click_ious


@METRICS.register_module()
class InteractiveClickMetric(BaseMetric):
    """Args:
        max_clicks (int): the click cap of NoC / NoF (20, the standard).
        iou_thrs (Sequence[float]): NoC / NoF thresholds (0.85, 0.90).
        report_clicks (Sequence[int]): the ``k`` of the reported ``mIoU@k``.
        collect_device, prefix: as in mmengine's ``BaseMetric`` (prefix default ``click``).
    """
    default_prefix: Optional[str] = 'click'

    def __init__(self,
                 max_clicks: int = 20,
                 iou_thrs: Sequence[float] = (0.85, 0.9),
                 report_clicks: Sequence[int] = (1, 2, 3, 5, 10, 20),
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if not isinstance(max_clicks, int) or max_clicks < 1:
            raise ValueError(f'max_clicks must be a positive int, got {max_clicks!r}')
        if not iou_thrs or any(not 0 < t <= 1 for t in iou_thrs):
            raise ValueError(f'iou_thrs must be in (0, 1], got {iou_thrs!r}')
        self.max_clicks = max_clicks
        self.iou_thrs = tuple(float(t) for t in iou_thrs)
        self.report_clicks = tuple(int(k) for k in report_clicks)

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            ious = sample.get('click_ious') if isinstance(sample, dict) else getattr(
                sample, 'click_ious', None)
            if ious is None:
                raise KeyError('InteractiveClickMetric: a data sample has no `click_ious`; '
                               'evaluate with an interactive model (SAM3Interactive) whose '
                               'predict simulates clicks')
            ious = np.asarray(ious.cpu() if hasattr(ious, 'cpu') else ious, dtype=np.float64)
            self.results.append(ious.reshape(-1, ious.shape[-1] if ious.ndim else 0))

    def compute_metrics(self, results: list) -> dict:
        rows = [r for r in results if len(r)]
        if not rows:
            raise ValueError('InteractiveClickMetric: no object was evaluated (no ground-truth '
                             'instance mask in the evaluation data)')
        ious = np.concatenate(rows, 0)
        out = summarize_click_ious(ious, self.max_clicks, self.iou_thrs, self.report_clicks)
        logger = MMLogger.get_current_instance()
        logger.info('clicks: ' + '  '.join(
            f'{k} {v:.3f}' if isinstance(v, float) else f'{k} {v}' for k, v in out.items()))
        return out
