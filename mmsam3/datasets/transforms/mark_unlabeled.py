"""MarkUnlabeled: flag an image as unlabeled (distillation targets come from the teacher).

Adds ``unlabeled=True`` to the results; ``PackSAM3Inputs`` copies it into the sample metainfo
(``unlabeled`` is one of its default meta keys), and :class:`~mmsam3.models.detectors.SAM3Distiller` then skips the
ground-truth losses of that image's prompts. Put it before ``BuildPromptQueries
(prompt_all_classes=True)`` so every category name becomes a prompt.
"""
from mmcv.transforms import BaseTransform
from mmdet.registry import TRANSFORMS


@TRANSFORMS.register_module()
class MarkUnlabeled(BaseTransform):
    """Set ``results['unlabeled'] = True``. No required keys."""

    def transform(self, results: dict) -> dict:
        results['unlabeled'] = True
        return results
