"""SAM 3 knowledge distillation: a student :class:`SAM3` trained against a frozen teacher.

The distiller *is* the student (it subclasses :class:`SAM3`, so its checkpoints are plain
student checkpoints and ``predict`` is the student's); the teacher is built from its own config
and checkpoint and held outside the module tree, like mmdet's knowledge-distillation detectors:
it is not a child module, so its parameters never reach ``parameters()`` (the optimizer, DDP's
gradient buckets) or ``state_dict()`` (checkpoints), and it follows the student's device and
dtype moves. It runs in eval mode under ``torch.no_grad``.

Training loss per batch (``B`` prompts)::

    task       the student's own SAM 3 losses (bbox_head.loss_by_feat) on prompts of labeled
               images, times task_weight
    features   neck levels, student vs teacher (normalised MSE + cosine)
    outputs    final decoder layer: logits / presence (teacher probabilities as soft targets),
               boxes (L1 + GIoU), masks (BCE + dice), on student queries matched to teacher
               queries by index (student queries copied from the teacher) or by Hungarian
               matching against the teacher's best-scored queries

An image whose metainfo has ``unlabeled=True`` (see :class:`MarkUnlabeled`) contributes only the
teacher terms; its prompts are the dataset's category names.
"""
import copy
import os.path as osp
from typing import Dict, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import SampleList
from torch import Tensor

from ..losses.sam3_distill_loss import SAM3DistillLoss  # noqa: F401  (registers it)
from ..utils.prompt_batch import PromptBatch
from .sam3 import SAM3

__all__ = ['SAM3Distiller']


@MODELS.register_module()
class SAM3Distiller(SAM3):
    """Student SAM 3 distilled from a frozen SAM 3 teacher.

    Args:
        teacher_config (str | dict): the teacher's config file (its ``model``) or model dict.
        teacher_ckpt (str): the teacher's checkpoint; required, loaded strictly.
        distill_loss (dict): :class:`SAM3DistillLoss` config (term weights).
        task_weight (float): weight of the student's own losses where ground truth exists
            (0 disables them).
        match (str): ``'auto'`` (index when the query counts agree or ``query_ids`` is given,
            else Hungarian), ``'index'`` or ``'hungarian'``.
        query_ids (Sequence[int], optional): teacher query of each student query (the
            ``queries`` list that ``compress_sam3.py`` saves in ``meta.compression``).
        teacher_input_size (int, optional): resize the student's input to this square size
            for the teacher (a student trained at 672 against a 1008 teacher); None feeds the
            same tensor.
        teacher_dtype (str, optional): store and run the teacher in ``'bfloat16'`` /
            ``'float16'`` (halves its memory; it needs no gradients); None keeps float32.
        **kwargs: the student's :class:`SAM3` arguments.
    """

    def __init__(self,
                 teacher_config: Union[str, dict, None] = None,
                 teacher_ckpt: Optional[str] = None,
                 distill_loss: Optional[dict] = None,
                 task_weight: float = 1.0,
                 match: str = 'auto',
                 query_ids: Optional[Sequence[int]] = None,
                 teacher_input_size: Optional[int] = None,
                 teacher_dtype: Optional[str] = None,
                 **kwargs):
        if teacher_config is None:
            raise ValueError('SAM3Distiller needs teacher_config (the teacher\'s config file or '
                             'model dict)')
        if not teacher_ckpt:
            raise ValueError('SAM3Distiller needs teacher_ckpt: a distillation run without the '
                             'teacher\'s weights would distil a random model. Set '
                             'model.teacher_ckpt=PATH (e.g. --cfg-options model.teacher_ckpt=...)')
        if not osp.isfile(teacher_ckpt):
            raise FileNotFoundError(f'SAM3Distiller: teacher checkpoint {teacher_ckpt} not found '
                                    '(set model.teacher_ckpt)')
        if match not in ('auto', 'index', 'hungarian'):
            raise ValueError(f"match must be 'auto', 'index' or 'hungarian', got {match!r}")
        super().__init__(**kwargs)
        self.distill_loss = MODELS.build(distill_loss or dict(type='SAM3DistillLoss'))
        self.task_weight = float(task_weight)
        self.match = match
        self.query_ids = None if query_ids is None else [int(i) for i in query_ids]
        self.teacher_input_size = teacher_input_size
        self.teacher_dtype = None if teacher_dtype is None else getattr(torch, teacher_dtype)
        self.assigner = TASK_UTILS.build(
            dict(type='SAM3HungarianAssigner', cost_class=0.0, cost_bbox=5.0, cost_giou=2.0))
        # Held outside the module tree: not in parameters(), state_dict() or DDP.
        object.__setattr__(self, 'teacher', self._build_teacher(teacher_config, teacher_ckpt))

    def _build_teacher(self, teacher_config, teacher_ckpt):
        from mmengine.config import Config

        from ...compression.compressor import load_teacher
        if isinstance(teacher_config, str):
            cfg = Config.fromfile(teacher_config).model
        else:
            cfg = copy.deepcopy(teacher_config)
        cfg = dict(cfg)
        # One tokenizer: the teacher sees the same token ids as the student.
        cfg['tokenizer'] = copy.deepcopy(self.tokenizer_cfg)
        cfg.pop('data_preprocessor', None)
        teacher = load_teacher(cfg, teacher_ckpt)
        for p in teacher.parameters():
            p.requires_grad_(False)
        q_t, q_s = teacher.decoder.num_queries, self.decoder.num_queries
        if self.query_ids is not None:
            bad = [i for i in self.query_ids if not 0 <= i < q_t]
            if len(self.query_ids) != q_s or bad:
                raise ValueError(f'query_ids must list {q_s} teacher queries in 0..{q_t - 1}, got '
                                 f'{len(self.query_ids)} (out of range: {bad})')
        elif self.match == 'index' and q_s != q_t:
            raise ValueError(f"match='index' with {q_s} student and {q_t} teacher queries: give "
                             "query_ids (compress_sam3.py's meta.compression.queries) or use "
                             "match='hungarian'")
        if self.teacher_dtype is not None:
            teacher.to(self.teacher_dtype)
        return teacher.eval()

    # ------------------------------------------------------------------------------------------
    # the teacher follows the student's device / dtype and stays in eval mode
    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        if 'teacher' in self.__dict__:
            self.teacher._apply(fn, *args, **kwargs)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        if 'teacher' in self.__dict__:
            self.teacher.eval()
        return self

    # ------------------------------------------------------------------------------------------
    def _prompt_stage(self, model: SAM3, img_feats, batch_inputs: Tensor,
                      prompts: PromptBatch) -> Dict[str, Tensor]:
        """Text tower + transformer + head of ``model`` for ``prompts`` on given image
        features (boxes are normalised, so any input size works)."""
        return model.forward_prompt_feats(
            img_feats, *prompts.to_tensors(model.encode_texts, batch_inputs.shape[-2:],
                                           batch_inputs.device))

    @torch.no_grad()
    def teacher_outputs(self, batch_inputs: Tensor, prompts: PromptBatch):
        """Teacher neck levels and raw head outputs (eval mode, no gradients)."""
        self.teacher.eval()
        t_inputs = batch_inputs
        size = self.teacher_input_size
        if size and tuple(batch_inputs.shape[-2:]) != (size, size):
            t_inputs = F.interpolate(batch_inputs, size=(size, size), mode='bilinear',
                                     align_corners=False)
        if self.teacher_dtype is None:
            t_feats = self.teacher.extract_feat(t_inputs)
            return t_feats, self._prompt_stage(self.teacher, t_feats, batch_inputs, prompts)
        with torch.autocast(batch_inputs.device.type, dtype=self.teacher_dtype):
            t_feats = self.teacher.extract_feat(t_inputs.to(self.teacher_dtype))
            out = self._prompt_stage(self.teacher, t_feats, batch_inputs, prompts)
        return t_feats, out

    def match_queries(self, s_out: Dict[str, Tensor], t_out: Dict[str, Tensor]):
        """``(prompt, student query, teacher query)`` index triples (long tensors)."""
        q_s = self.decoder.num_queries
        num_prompts, q_t = t_out['logits'].shape[1:3]
        device = s_out['logits'].device
        by_index = self.match == 'index' or (self.match == 'auto' and
                                             (self.query_ids is not None or q_s == q_t))
        if by_index:
            t_ids = (torch.as_tensor(self.query_ids, device=device) if self.query_ids is not None
                     else torch.arange(q_s, device=device))
            b_idx = torch.arange(num_prompts, device=device).repeat_interleave(q_s)
            return b_idx, torch.arange(q_s, device=device).repeat(num_prompts), t_ids.repeat(
                num_prompts)
        # Hungarian against the teacher's q_s best-scored queries of each prompt.
        t_score = t_out['logits'][-1, :, :, 0].sigmoid()
        k = min(q_s, q_t)
        top = t_score.topk(k, dim=1).indices  # (B, k)
        t_boxes = t_out['boxes'][-1].gather(1, top[..., None].expand(-1, -1, 4))
        res = self.assigner.match(s_out['logits'][-1, :, :q_s], s_out['boxes'][-1, :, :q_s],
                                  t_boxes, torch.full((num_prompts, ), k, device=device))
        local = res.tgt_idx - res.batch_idx * k  # packed -> per-prompt index into `top`
        return res.batch_idx, res.src_idx, top[res.batch_idx, local]

    @staticmethod
    def _subset(outputs: Dict[str, Tensor], idx: Tensor) -> Dict[str, Tensor]:
        out = {}
        for key, value in outputs.items():
            if value is None:
                out[key] = None
            elif key in ('pred_masks', 'semantic_seg'):
                out[key] = value[idx]
            else:
                out[key] = value[:, idx]
        return out

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        prompts = self._prompts(batch_inputs, batch_data_samples)
        if not len(prompts):
            zero = sum(p.sum() * 0 for p in self.parameters() if p.requires_grad)
            return dict(loss_kd_logits=zero)
        s_feats = self.extract_feat(batch_inputs)
        s_out = self._prompt_stage(self, s_feats, batch_inputs, prompts)
        t_feats, t_out = self.teacher_outputs(batch_inputs, prompts)

        losses = dict(self.distill_loss.feature_losses(s_feats, t_feats))
        q_s = self.decoder.num_queries
        s_o2o = dict(s_out)
        for key in ('logits', 'boxes'):
            s_o2o[key] = s_out[key][:, :, :q_s]
        if 'pred_masks' in s_out:
            s_o2o['pred_masks'] = s_out['pred_masks'][:, :q_s]
        losses.update(self.distill_loss.output_losses(s_o2o, t_out,
                                                      self.match_queries(s_o2o, t_out)))

        labeled = [not s.metainfo.get('unlabeled', False) for s in batch_data_samples]
        keep = [p for p, i in enumerate(prompts.img_ids) if labeled[i]]
        if self.task_weight > 0 and keep:
            sub = PromptBatch(img_ids=[prompts.img_ids[p] for p in keep],
                              texts=[prompts.texts[p] for p in keep],
                              labels=[prompts.labels[p] for p in keep],
                              boxes=[prompts.boxes[p] for p in keep],
                              box_labels=[prompts.box_labels[p] for p in keep])
            idx = torch.as_tensor(keep, dtype=torch.long, device=batch_inputs.device)
            task = self.bbox_head.loss_by_feat(self._subset(s_out, idx), sub, batch_data_samples,
                                               tuple(batch_inputs.shape[-2:]))
            for name, value in task.items():
                losses[name] = value * self.task_weight if 'loss' in name else value
        return losses
