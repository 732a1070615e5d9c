"""The whole compression step on built models: plan, (optional) block ranking, state dict.

``compress_sam3(teacher, student)`` returns the student with the teacher's weights cut in and
the :class:`CompressionPlan`; :func:`load_teacher` builds a teacher from its config and
checkpoint and refuses a checkpoint that does not fit the config.
"""
import glob
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from .block_ranking import score_vit_blocks
from .compression_plan import CompressionError, CompressionPlan, make_plan
from .state_dict_surgery import compress_state_dict

__all__ = ['compress_sam3', 'load_teacher', 'load_calibration_images', 'checkpoint_state_dict']

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp')


def checkpoint_state_dict(path: str) -> dict:
    """The ``state_dict`` of an mmengine / mmsam3 checkpoint file (or a bare state dict)."""
    from mmengine.runner.checkpoint import _load_checkpoint
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {path} not found')
    ckpt = _load_checkpoint(path, map_location='cpu')
    sd = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else ckpt
    return {k[len('module.'):] if k.startswith('module.') else k: v for k, v in sd.items()}


def load_teacher(model_cfg: dict, checkpoint: str) -> nn.Module:
    """Build the teacher ``SAM3`` from ``model_cfg`` and load ``checkpoint`` strictly.

    Raises:
        CompressionError: the checkpoint's keys or shapes do not match the config (the message
            lists the first missing / unexpected / mismatched entries).
    """
    from mmdet.registry import MODELS
    model = MODELS.build(model_cfg)
    sd = checkpoint_state_dict(checkpoint)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    shapes = [f'{k}: checkpoint {tuple(sd[k].shape)} vs config {tuple(own[k].shape)}'
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        def few(items):
            return ', '.join(items[:5]) + (f' (+{len(items) - 5} more)' if len(items) > 5 else '')
        parts = []
        if missing:
            parts.append(f'{len(missing)} missing: {few(missing)}')
        if unexpected:
            parts.append(f'{len(unexpected)} unexpected: {few(unexpected)}')
        if shapes:
            parts.append(f'{len(shapes)} with another shape: {few(shapes)}')
        raise CompressionError(f'teacher checkpoint {checkpoint} does not match the teacher '
                               f'config; ' + '; '.join(parts) + '. Pass the config the '
                               'checkpoint was trained / converted with')
    model.load_state_dict(sd, strict=True)
    return model.eval()


def load_calibration_images(folder: str, model: nn.Module, size: int,
                            limit: int = 16) -> List[Tensor]:
    """Up to ``limit`` images of ``folder``, resized to ``size x size`` and normalised by the
    model's data preprocessor: a list of ``(3, size, size)`` float tensors."""
    import mmcv
    files = sorted(f for f in glob.glob(osp.join(folder, '**', '*'), recursive=True)
                   if f.lower().endswith(IMAGE_EXTS))[:limit]
    if not files:
        raise CompressionError(f'no calibration images ({", ".join(IMAGE_EXTS)}) under {folder}')
    imgs = [torch.from_numpy(mmcv.imresize(mmcv.imread(f), (size, size))).permute(2, 0, 1)
            for f in files]
    with torch.no_grad():
        data = model.data_preprocessor(dict(inputs=imgs), training=False)
    return list(data['inputs'])


def compress_sam3(teacher: nn.Module,
                  student_cfg: dict,
                  compress_cfg: Optional[dict] = None,
                  calib_images: Optional[Sequence[Tensor]] = None,
                  rank_blocks: bool = False) -> Tuple[nn.Module, CompressionPlan]:
    """Build the student from ``student_cfg`` and cut its weights out of ``teacher``.

    Args:
        teacher (nn.Module): the teacher ``SAM3`` (weights loaded).
        student_cfg (dict): the student's ``model`` config.
        compress_cfg (dict, optional): explicit keep lists (see :func:`make_plan`).
        calib_images (Sequence[Tensor], optional): normalised ``(3, H, W)`` images for the
            ranking mode.
        rank_blocks (bool): choose the windowed ViT blocks by :func:`score_vit_blocks` on
            ``calib_images`` instead of evenly spaced ones.

    Returns:
        (student, plan): the student in eval mode with every tensor from the teacher.
    """
    from mmdet.registry import MODELS
    from .compression_plan import model_sizes
    student_cfg = dict(student_cfg)
    _check_student_cfg(student_cfg)
    student = MODELS.build(student_cfg)
    scores = None
    if rank_blocks:
        if not calib_images:
            raise CompressionError('--rank-blocks needs calibration images (--calib-images DIR)')
        scores = score_vit_blocks(teacher.backbone, calib_images)
    plan = make_plan(teacher, student, compress_cfg, scores)
    sd = compress_state_dict(teacher.state_dict(), student, plan)
    student.load_state_dict(sd, strict=True)
    plan.sizes['student'] = model_sizes(student)
    return student.eval(), plan


def _check_student_cfg(cfg: dict) -> None:
    """Size errors that the model constructors would report less clearly."""
    bb = cfg.get('backbone', {})
    depth = bb.get('depth')
    glob_blocks = bb.get('global_att_blocks')
    if depth is not None and glob_blocks is not None:
        bad = [int(i) for i in glob_blocks if not 0 <= int(i) < int(depth)]
        if bad:
            raise CompressionError(
                f'student backbone.global_att_blocks {tuple(glob_blocks)}: {bad} out of range '
                f'for depth {depth} (indices 0..{int(depth) - 1}); remap them to the kept blocks')
    width = bb.get('embed_dims', bb.get('embed_dim'))
    heads = bb.get('num_heads')
    if width is not None and heads is not None and int(width) % int(heads):
        raise CompressionError(f'student ViT width {width} is not a multiple of num_heads '
                               f'{heads}: prune whole heads (width = heads x head size)')
