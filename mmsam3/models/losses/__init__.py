"""losses of mmsam3 (registered in ``mmdet.registry.MODELS``)."""
from .sam3_criterion import SAM3Criterion, pack_sam3_targets
from .sam3_distill_loss import SAM3DistillLoss
from .sam_interactive_loss import SAMInteractiveLoss
from .sam3_loss_terms import SAM3BoxLoss, SAM3IABCELoss, SAM3MaskLoss

__all__ = ['SAM3Criterion', 'pack_sam3_targets', 'SAM3BoxLoss', 'SAM3IABCELoss', 'SAM3MaskLoss',
           'SAM3DistillLoss', 'SAMInteractiveLoss']
