"""Small helpers shared by the mmsam3 data transforms."""
import numpy as np

# Per-instance keys that mmdet's LoadAnnotations writes and that must stay aligned.
GT_KEYS = ('gt_bboxes', 'gt_bboxes_labels', 'gt_masks', 'gt_ignore_flags')


def select_instances(results: dict, keep: np.ndarray) -> dict:
    """Keep the instances where the bool array ``keep`` (num_gt,) is True, in every gt key."""
    keep = np.asarray(keep, dtype=bool)
    for key in GT_KEYS:
        if key in results:
            results[key] = results[key][keep]
    return results


def num_instances(results: dict) -> int:
    for key in ('gt_bboxes_labels', 'gt_bboxes'):
        if key in results:
            return len(results[key])
    return 0
