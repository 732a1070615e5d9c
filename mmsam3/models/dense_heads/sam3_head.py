"""SAM 3 head: query scoring, masks, losses and post-processing (the DETR-family head).

``forward`` turns the transformer's outputs into the raw per-prompt outputs; ``loss`` /
``loss_by_feat`` build the targets of every prompt, lay the outputs out as the official criterion
expects and compute the losses; ``predict`` / ``predict_by_feat`` turn raw outputs into
``InstanceData``. ``predict_by_feat`` takes plain tensors, so a deployed model (ONNX Runtime,
TensorRT) reuses it on its graphs' outputs.

Raw outputs (``B`` prompts, ``L`` decoder layers, ``Q'`` queries: ``Q`` one-to-one, then in
training ``Q`` one-to-many)::

    logits      (L, B, Q', 1)   class logit of each query against its prompt
    boxes       (L, B, Q', 4)   normalised cxcywh
    presence    (L, B, 1)       logit that the prompt's concept is in the image (or None)
    pred_masks  (B, Q', h, w)   mask logits at stride 3.5 (with a mask head)
    semantic_seg (B, 1, h, w)   semantic logits (with a mask head)
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.model import BaseModule
from mmengine.structures import InstanceData
from torch import Tensor

from ..utils.prompt_batch import PromptBatch, check_prompts_per_run

__all__ = ['SAM3Head']


@MODELS.register_module()
class SAM3Head(BaseModule):
    """Scoring, mask prediction, loss and post-processing of SAM 3.

    Args:
        num_queries (int): One-to-one object queries (200); the detector sets it from its
            decoder.
        scoring_head (dict): :class:`SAM3ScoringHead` config (query-vs-prompt logits).
        mask_head (dict, optional): :class:`SAM3MaskHead` config; None for a box-only model.
        criterion (dict, optional): :class:`SAM3Criterion` config; needed by ``loss``.
        train_cfg (dict, optional): kept for mmdet compatibility (nothing is read from it).
        test_cfg (dict, optional): ``score_thr`` (0.0), ``max_per_prompt`` (-1: all queries),
            ``max_per_img`` (100), ``mask_thr`` (0.5, on probabilities), ``with_masks`` (True),
            ``prompts_per_run`` (None: all prompts of a batch in one run of the prompt stages;
            N: at most N per run, which bounds memory; read by :meth:`SAM3.predict`).
    """

    # Axis of the prompts in each raw output (module doc).
    PROMPT_AXIS = dict(logits=1, boxes=1, presence=1, pred_masks=0, semantic_seg=0)

    def __init__(self,
                 num_queries: int,
                 scoring_head: dict,
                 mask_head: Optional[dict] = None,
                 criterion: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.num_queries = num_queries
        self.scoring_head = MODELS.build(scoring_head)
        self.mask_head = MODELS.build(mask_head) if mask_head is not None else None
        self.criterion = MODELS.build(criterion) if criterion is not None else None
        self.train_cfg = dict(train_cfg or {})
        self.test_cfg = dict(score_thr=0.0, max_per_prompt=-1, max_per_img=100, mask_thr=0.5,
                             with_masks=True, prompts_per_run=None)
        self.test_cfg.update(test_cfg or {})
        check_prompts_per_run(self.test_cfg['prompts_per_run'], 'test_cfg.prompts_per_run')

    @classmethod
    def concat_outputs(cls, chunks: Sequence[Dict[str, Optional[Tensor]]]) -> Dict[str, Tensor]:
        """Raw outputs of consecutive runs on prompt chunks -> those of one run on all."""
        out = {}
        for key, first in chunks[0].items():
            if first is None:
                out[key] = None
            elif key not in cls.PROMPT_AXIS:
                raise KeyError(f'SAM3Head.concat_outputs: unknown raw output {key!r}')
            else:
                out[key] = torch.cat([c[key] for c in chunks], cls.PROMPT_AXIS[key])
        return out

    @property
    def with_masks(self) -> bool:
        return self.mask_head is not None

    def forward(self,
                hs: Tensor,
                boxes: Tensor,
                presence: Optional[Tensor],
                prompt: Tensor,
                prompt_mask: Tensor,
                memory: Tensor,
                feat_size: Sequence[int],
                mlvl_feats: Sequence[Tensor] = (),
                img_ids: Optional[Tensor] = None,
                pixel_laterals: Optional[Sequence[Tensor]] = None) -> Dict[str, Tensor]:
        """Raw outputs (module doc) from the transformer's.

        Args:
            hs (Tensor): decoder outputs of every layer, ``(L, B, Q', C)``.
            boxes (Tensor): the decoder's boxes, ``(L, B, Q', 4)`` normalised cxcywh.
            presence (Tensor | None): the decoder's presence logits ``(L, B, 1)``.
            prompt (Tensor): prompt tokens ``(S, B, C)`` (sequence-first), ``prompt_mask``
                ``(B, S)`` bool, True = padding.
            memory (Tensor): fusion-encoder output ``(HW, B, C)`` of the ``feat_size`` map.
            mlvl_feats (Sequence[Tensor]): the neck levels finer than the encoder's, finest
                first, ``(B_img, C, H_i, W_i)``; ``img_ids (B,)`` the image of each prompt.
            pixel_laterals (Sequence[Tensor], optional): the mask head's per-image terms (see
                :class:`SAM3MaskHead`), from :meth:`SAM3.image_terms`.
        """
        out = dict(logits=self.scoring_head(hs, prompt, prompt_mask), boxes=boxes,
                   presence=presence)
        if self.mask_head is not None:
            out.update(
                self.mask_head(mlvl_feats, memory, feat_size, hs[-1], prompt, prompt_mask,
                               img_ids, pixel_laterals))
        return out

    # ------------------------------------------------------------------------------------------
    # training
    def loss(self, head_inputs: dict, prompts: PromptBatch, batch_data_samples: SampleList,
             batch_input_shape: Sequence[int]) -> Dict[str, Tensor]:
        """Forward, then :meth:`loss_by_feat`."""
        return self.loss_by_feat(self(**head_inputs), prompts, batch_data_samples,
                                 batch_input_shape)

    def loss_by_feat(self, outputs: Dict[str, Tensor], prompts: PromptBatch,
                     batch_data_samples: SampleList,
                     batch_input_shape: Sequence[int]) -> Dict[str, Tensor]:
        """Official SAM 3 losses (one-to-one + one-to-many, auxiliary layers, presence, masks)
        of the raw outputs against each prompt's targets (the instances of its category)."""
        if self.criterion is None:
            raise RuntimeError('SAM3Head.loss needs a `criterion` in the bbox_head config')
        targets = self.get_targets(prompts, batch_data_samples, batch_input_shape,
                                   with_masks='pred_masks' in outputs)
        return self.criterion(self.criterion_outputs(outputs), targets)

    def criterion_outputs(self, outputs: Dict[str, Tensor]) -> dict:
        """Decoder-layer stacks -> the official output dict (final layer + ``aux_outputs``)."""
        q = self.num_queries
        num_layers = outputs['logits'].shape[0]
        has_o2m = outputs['logits'].shape[2] > q

        def layer(idx):
            d = dict(pred_logits=outputs['logits'][idx, :, :q],
                     pred_boxes=outputs['boxes'][idx, :, :q])
            if outputs['presence'] is not None:
                d['presence_logit_dec'] = outputs['presence'][idx]
            if has_o2m:
                d['pred_logits_o2m'] = outputs['logits'][idx, :, q:]
                d['pred_boxes_o2m'] = outputs['boxes'][idx, :, q:]
            return d

        result = layer(num_layers - 1)
        result['aux_outputs'] = [layer(i) for i in range(num_layers - 1)]
        if 'pred_masks' in outputs:
            result['pred_masks'] = outputs['pred_masks'][:, :q]
            if has_o2m:
                result['pred_masks_o2m'] = outputs['pred_masks'][:, q:]
        return result

    @staticmethod
    def get_targets(prompts: PromptBatch, batch_data_samples: SampleList,
                    batch_input_shape: Sequence[int], with_masks: bool) -> List[InstanceData]:
        """Per prompt, the ground-truth instances of its category: ``bboxes`` normalised
        cxcywh ``(N_p, 4)`` and, with masks, ``masks`` ``(N_p, H, W)`` bool at the padded
        input size. A prompt whose category is absent gets no instance (a negative prompt)."""
        h, w = batch_input_shape
        targets = []
        for img_id, label in zip(prompts.img_ids, prompts.labels):
            gt = batch_data_samples[img_id].gt_instances
            keep = (gt.labels == label).nonzero().flatten()
            bboxes = gt.bboxes
            if hasattr(bboxes, 'tensor'):
                bboxes = bboxes.tensor
            bboxes = bboxes[keep].float()
            scale = bboxes.new_tensor([w, h, w, h])
            target = InstanceData(bboxes=bbox_xyxy_to_cxcywh(bboxes / scale).clamp(0, 1))
            if with_masks and 'masks' in gt:
                device = bboxes.device
                if len(keep):
                    masks = gt.masks[keep.cpu().numpy()]
                    if hasattr(masks, 'pad'):
                        masks = masks.pad((h, w))
                    masks = (masks.to_tensor(torch.bool, device) if hasattr(masks, 'to_tensor')
                             else torch.as_tensor(masks, device=device))
                    target.masks = masks.bool()
                else:
                    target.masks = torch.zeros(0, h, w, dtype=torch.bool, device=device)
            targets.append(target)
        return targets

    # ------------------------------------------------------------------------------------------
    # inference
    def predict(self, head_inputs: dict, prompts: PromptBatch, batch_data_samples: SampleList,
                batch_input_shape: Sequence[int], rescale: bool = True) -> List[InstanceData]:
        """Forward, then :meth:`predict_by_feat`."""
        return self.predict_by_feat(self(**head_inputs), prompts, batch_data_samples,
                                    batch_input_shape, rescale)

    def predict_by_feat(self,
                        outputs: Dict[str, Tensor],
                        prompts: PromptBatch,
                        batch_data_samples: SampleList,
                        batch_input_shape: Sequence[int],
                        rescale: bool = True) -> List[InstanceData]:
        """Raw outputs -> one ``InstanceData`` per image.

        Each has ``bboxes`` (xyxy; in the original image with ``rescale``, else in the resized
        one), ``scores`` = ``sigmoid(logit) * sigmoid(presence)``, ``labels`` (the prompt's
        label), ``label_names`` (its phrase) and, with masks, ``masks`` (bool, same frame). Only
        the final decoder layer and the one-to-one queries are used. An image without prompts
        gets empty results.
        """
        return [
            self._predict_image(outputs, prompts, prompts.of_image(i), sample,
                                batch_input_shape, rescale)
            for i, sample in enumerate(batch_data_samples)
        ]

    def _select_queries(self, outputs: Dict[str, Tensor],
                        prompt_idx: Sequence[int]) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
        """Per image: scores, boxes, prompt index and query index of the kept queries, sorted
        by score, after ``score_thr`` / ``max_per_prompt`` / ``max_per_img``."""
        cfg = self.test_cfg
        idx = torch.as_tensor(list(prompt_idx), device=outputs['logits'].device)
        scores = outputs['logits'][-1, idx, :self.num_queries, 0].sigmoid()  # (P, Q)
        if outputs['presence'] is not None:
            scores = scores * outputs['presence'][-1, idx, :1].sigmoid()
        boxes = outputs['boxes'][-1, idx, :self.num_queries]
        num_prompts, num_queries = scores.shape
        keep_prompt, keep_query = [], []
        for p in range(num_prompts):
            order = scores[p].argsort(descending=True)
            if cfg['score_thr'] > 0:
                order = order[scores[p, order] > cfg['score_thr']]
            if cfg.get('max_per_prompt', -1) and cfg['max_per_prompt'] > 0:
                order = order[:cfg['max_per_prompt']]
            keep_prompt.append(torch.full_like(order, p))
            keep_query.append(order)
        keep_prompt, keep_query = torch.cat(keep_prompt), torch.cat(keep_query)
        kept = scores[keep_prompt, keep_query]
        # Stable, so ties keep the per-prompt order (prompt first, then query rank).
        order = kept.argsort(descending=True, stable=True)
        if cfg.get('max_per_img', -1) and cfg['max_per_img'] > 0:
            order = order[:cfg['max_per_img']]
        keep_prompt, keep_query = keep_prompt[order], keep_query[order]
        return kept[order], boxes[keep_prompt, keep_query], idx[keep_prompt], keep_query

    def _predict_image(self, outputs, prompts: PromptBatch, prompt_idx: List[int], sample,
                       batch_input_shape, rescale: bool) -> InstanceData:
        device = outputs['logits'].device if outputs else torch.device('cpu')
        results = InstanceData()
        if not prompt_idx:
            results.bboxes = torch.zeros(0, 4, device=device)
            results.scores = torch.zeros(0, device=device)
            results.labels = torch.zeros(0, dtype=torch.long, device=device)
            results.label_names = []
            return results
        h_in, w_in = batch_input_shape
        img_h, img_w = sample.metainfo.get('img_shape', batch_input_shape)[:2]
        ori_h, ori_w = sample.metainfo.get('ori_shape', (img_h, img_w))[:2]
        scores, boxes, prompt_of, query_of = self._select_queries(outputs, prompt_idx)
        bboxes = bbox_cxcywh_to_xyxy(boxes) * boxes.new_tensor([w_in, h_in, w_in, h_in])
        if rescale:
            scale_factor = sample.metainfo.get('scale_factor', (1.0, 1.0))
            bboxes = bboxes / bboxes.new_tensor(scale_factor).repeat(2)
            frame_h, frame_w = ori_h, ori_w
        else:
            frame_h, frame_w = img_h, img_w
        bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, frame_w)
        bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, frame_h)
        results.bboxes = bboxes
        results.scores = scores
        labels = torch.as_tensor(prompts.labels, dtype=torch.long, device=device)
        results.labels = labels[prompt_of]
        results.label_names = [prompts.texts[p] for p in prompt_of.tolist()]
        if self.test_cfg.get('with_masks', True) and 'pred_masks' in outputs:
            results.masks = self._resize_masks(outputs['pred_masks'][prompt_of, query_of],
                                               (h_in, w_in), (img_h, img_w),
                                               (frame_h, frame_w))
        return results

    def _resize_masks(self, mask_logits: Tensor, input_size, img_size, out_size) -> Tensor:
        """``(N, h, w)`` logits at stride 3.5 of the padded input -> ``(N, H, W)`` bool masks
        in the output frame (the padding removed first)."""
        if mask_logits.shape[0] == 0:
            return torch.zeros(0, *out_size, dtype=torch.bool, device=mask_logits.device)
        mask_logits = mask_logits[None]
        if tuple(img_size) != tuple(input_size):
            mask_logits = F.interpolate(mask_logits, size=tuple(input_size), mode='bilinear',
                                        align_corners=False)
            mask_logits = mask_logits[..., :img_size[0], :img_size[1]]
        mask_logits = F.interpolate(mask_logits.float(), size=tuple(out_size), mode='bilinear',
                                    align_corners=False)
        return mask_logits[0].sigmoid() > self.test_cfg.get('mask_thr', 0.5)
