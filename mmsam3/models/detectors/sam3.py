"""SAM 3 image detector (Segment Anything with Concepts) as an mmdet detector.

Data flow for ``B_img`` images carrying ``B`` prompts in total (one prompt = one noun phrase,
optionally with exemplar boxes)::

    inputs (B_img, 3, H, W) ─ backbone (ViT) ─ neck (simple FPN) ─ [s4, s8, s16] maps
    texts (unique strings) ─ tokenizer ─ text_encoder ─ (L, N_text, C)
                                      gather per prompt (img_ids, text_ids)
    s16 tokens (HW, B, C) + exemplar boxes ─ geometry_encoder ─ geo tokens (S_g, B, C)
    prompt = [text tokens; geo tokens] (S, B, C) with padding mask (B, S)
    encoder: s16 tokens attend to the prompt ─ memory (HW, B, C)
    decoder: Q queries attend to prompt + memory ─ hs (L_dec, B, Q, C), boxes, presence
    scoring_head(hs, prompt) ─ logits (L_dec, B, Q, 1)
    mask_head([s4, s8], memory, hs[-1], prompt) ─ masks (B, Q, H/4, W/4)

The image tower runs once per image and the text tower once per distinct phrase, whatever the
number of prompts. The final score of a query is ``sigmoid(logit) * sigmoid(presence)``, as in
the official model. Prompts come from each ``DetDataSample``: metainfo ``texts`` (or ``text`` as
mmdet's ``DetInferencer`` passes it), ``prompt_labels``, and optional ``prompt_boxes`` /
``prompt_box_labels``.
"""
import copy
import warnings
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample, OptSampleList, SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData
from torch import Tensor

from ..layers.position_encoding import SAM3SinePositionEncoding


def prompts_of(data_sample) -> Tuple[List[str], List[int]]:
    """The noun phrases of one sample and the label each one predicts.

    ``texts`` (list) wins over ``text``; a ``text`` string is split on ``'.'`` like mmdet's
    Grounding DINO custom entities (``'fish . shark'``). ``prompt_labels`` defaults to the
    prompt index.
    """
    meta = data_sample.metainfo
    texts = meta.get('texts', None)
    if texts is None:
        texts = meta.get('text', None)
    if texts is None:
        texts = []
    elif isinstance(texts, str):
        texts = [t.strip() for t in texts.split('.') if t.strip()] or [texts]
    texts = list(texts)
    labels = meta.get('prompt_labels', None)
    labels = list(range(len(texts))) if labels is None else [int(x) for x in labels]
    if len(labels) != len(texts):
        raise ValueError(f'{len(texts)} prompts but {len(labels)} prompt_labels in sample '
                         f'{meta.get("img_path", "")}')
    return texts, labels


@MODELS.register_module()
class SAM3(BaseDetector):
    """SAM 3 promptable concept detector / segmenter.

    Args:
        backbone, neck, text_encoder, geometry_encoder, encoder, decoder, scoring_head (dict):
            configs of the components (see ``configs/_base_/models/sam3_vit-l.py``).
        tokenizer (dict): config of :class:`SAM3Tokenizer`; built lazily on the first text
            prompt, so a model can be built (and loaded) without the BPE file at hand.
        mask_head (dict, optional): segmentation head; None for box-only models.
        criterion (dict, optional): training loss (:class:`SAM3Criterion`); needed by ``loss``.
        train_cfg (dict, optional): unused keys are kept for mmdet compatibility.
        test_cfg (dict, optional): ``score_thr`` (0.0), ``max_per_prompt`` (all queries),
            ``max_per_img`` (100), ``mask_thr`` (0.5, on probabilities), ``with_masks`` (True).
        data_preprocessor (dict, optional): mmdet ``DetDataPreprocessor`` config.
        frozen_modules (Sequence[str]): children to freeze for fine-tuning, e.g.
            ``('backbone', 'text_encoder')`` (frozen towers). Their parameters get
            ``requires_grad=False`` (no gradients or optimizer state, and no activations are
            kept for backward) and the modules stay in eval mode (no drop-path / dropout).
        lora (dict, optional): LoRA adapters on the image / text towers, keyword arguments of
            :func:`mmsam3.models.utils.apply_lora` (``r``, ``lora_alpha``, ``lora_dropout``,
            ``towers``); the towers' base weights are frozen.
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 text_encoder: dict,
                 geometry_encoder: dict,
                 encoder: dict,
                 decoder: dict,
                 scoring_head: dict,
                 tokenizer: dict,
                 mask_head: Optional[dict] = None,
                 criterion: Optional[dict] = None,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 frozen_modules: Sequence[str] = (),
                 lora: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        self.text_encoder = MODELS.build(text_encoder)
        self.geometry_encoder = MODELS.build(geometry_encoder)
        self.encoder = MODELS.build(encoder)
        self.decoder = MODELS.build(decoder)
        self.scoring_head = MODELS.build(scoring_head)
        self.mask_head = MODELS.build(mask_head) if mask_head is not None else None
        self.criterion = MODELS.build(criterion) if criterion is not None else None
        self.tokenizer_cfg = copy.deepcopy(tokenizer)
        self._tokenizer = None
        self.d_model = self.decoder.d_model
        self.num_queries = self.decoder.num_queries
        self.position_encoding = SAM3SinePositionEncoding(num_feats=self.d_model)
        self.train_cfg = train_cfg or {}
        self.test_cfg = dict(score_thr=0.0, max_per_prompt=-1, max_per_img=100, mask_thr=0.5,
                             with_masks=True)
        self.test_cfg.update(test_cfg or {})
        self._freeze_dead_parameters()
        if lora is not None:
            from ..utils.lora import apply_lora
            apply_lora(self, **lora)
        self.frozen_modules = tuple(frozen_modules)
        self._freeze_modules()

    def _freeze_modules(self):
        children = dict(self.named_children())
        for name in self.frozen_modules:
            if name not in children or children[name] is None:
                raise KeyError(f'frozen_modules: SAM3 has no child {name!r} '
                               f'(children: {sorted(children)})')
            children[name].eval()
            for param in children[name].parameters():
                param.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        # Frozen towers stay in eval mode (no drop-path / dropout noise on fixed features).
        for name in getattr(self, 'frozen_modules', ()):
            getattr(self, name).eval()
        return self

    def _freeze_dead_parameters(self):
        """``requires_grad=False`` on weights the image model never uses.

        They stay in the model so official checkpoints load with ``strict=True``: the text
        encoder's ``text_projection`` (multiplied, then discarded, by the official code), the
        geometry encoder's point-prompt projections (the image model ignores points) and the
        pixel-decoder stages beyond the neck levels that feed it. Freezing them lets DDP run
        without touching them; ``find_unused_parameters`` is still needed for parameters that are
        idle only in some steps (box-exemplar pooling, the semantic head without its loss).
        """
        dead = ['text_encoder.encoder.text_projection', 'geometry_encoder.points_']
        if self.mask_head is not None:
            used_stages = getattr(self.neck, 'num_outs', 3) - 1
            for i in range(used_stages, len(self.mask_head.pixel_decoder.conv_layers)):
                dead += [f'mask_head.pixel_decoder.conv_layers.{i}.',
                         f'mask_head.pixel_decoder.norms.{i}.']
        for name, param in self.named_parameters():
            if any(name == d or name.startswith(d) for d in dead):
                param.requires_grad_(False)

    # ------------------------------------------------------------------------------------------
    # prompts
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = MODELS.build(self.tokenizer_cfg)
        return self._tokenizer

    def encode_texts(self, texts: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """Text tower: ``(L, N, C)`` sequence-first features and ``(N, L)`` padding mask."""
        device = next(self.text_encoder.parameters()).device
        token_ids = self.tokenizer(list(texts)).to(device)
        feats, pad_mask = self.text_encoder(token_ids)
        return feats.transpose(0, 1), pad_mask

    def _collect_prompts(self, batch_data_samples: SampleList):
        """Flatten the prompts of a batch: one entry per (image, prompt) pair."""
        img_ids, texts, labels, boxes, box_labels = [], [], [], [], []
        for i, sample in enumerate(batch_data_samples):
            sample_texts, sample_labels = prompts_of(sample)
            meta = sample.metainfo
            p_boxes = meta.get('prompt_boxes', None)
            p_box_labels = meta.get('prompt_box_labels', None)
            if p_boxes is not None and len(p_boxes) != len(sample_texts):
                raise ValueError(f'{len(sample_texts)} prompts but {len(p_boxes)} prompt_boxes '
                                 f'entries in sample {meta.get("img_path", i)}')
            for j, (text, label) in enumerate(zip(sample_texts, sample_labels)):
                if not isinstance(text, str):
                    raise TypeError(f'prompt {j} of image {i} is {type(text).__name__}, not str')
                img_ids.append(i)
                texts.append(text)
                labels.append(label)
                b = None if p_boxes is None else p_boxes[j]
                bl = None if p_box_labels is None else p_box_labels[j]
                boxes.append(b)
                box_labels.append(bl)
        return img_ids, texts, labels, boxes, box_labels

    def _pack_boxes(self, boxes, box_labels, batch_input_shape, device):
        """Exemplar boxes (xyxy input pixels) -> ``(N, B, 4)`` cxcywh in [0, 1], mask, labels.

        Boxes reaching outside the image are clipped to it; a box with no area left raises.
        """
        h, w = batch_input_shape
        scale = torch.tensor([w, h, w, h], dtype=torch.float32, device=device)
        per_prompt = []
        for p, (b, bl) in enumerate(zip(boxes, box_labels)):
            if b is None or len(b) == 0:
                per_prompt.append((torch.zeros(0, 4, device=device),
                                   torch.zeros(0, dtype=torch.long, device=device)))
                continue
            b = torch.as_tensor(b, dtype=torch.float32, device=device).reshape(-1, 4)
            if not torch.isfinite(b).all():
                raise ValueError(f'prompt {p}: exemplar boxes contain NaN/inf: {b.tolist()}')
            clipped = torch.minimum(torch.maximum(b, torch.zeros_like(scale)), scale)
            if (clipped[:, 2] <= clipped[:, 0]).any() or (clipped[:, 3] <= clipped[:, 1]).any():
                raise ValueError(
                    f'prompt {p}: exemplar box(es) {b.tolist()} (xyxy, input pixels) have no '
                    f'area inside the {w}x{h} input image')
            if not torch.equal(clipped, b):
                warnings.warn(f'prompt {p}: exemplar boxes clipped to the {w}x{h} input image')
            bl = (torch.ones(len(b), dtype=torch.long, device=device) if bl is None else
                  torch.as_tensor(bl, device=device).long().reshape(-1))
            if len(bl) != len(b):
                raise ValueError(f'prompt {p}: {len(b)} exemplar boxes but {len(bl)} labels')
            per_prompt.append((bbox_xyxy_to_cxcywh(clipped / scale), bl))
        num = max([len(x[0]) for x in per_prompt] + [0])
        bs = len(per_prompt)
        packed = torch.zeros(num, bs, 4, device=device)
        mask = torch.ones(bs, num, dtype=torch.bool, device=device)
        labels = torch.zeros(num, bs, dtype=torch.long, device=device)
        for p, (b, bl) in enumerate(per_prompt):
            packed[:len(b), p] = b
            labels[:len(b), p] = bl
            mask[p, :len(b)] = False
        return packed, mask, labels

    # ------------------------------------------------------------------------------------------
    # features
    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Image tower: the neck levels SAM 3 uses, finest first (strides 3.5, 7 and 14)."""
        return tuple(self.neck(self.backbone(batch_inputs)))

    def forward_prompts(self, img_feats: Sequence[Tensor], img_ids: Sequence[int],
                        texts: Sequence[str], boxes, box_labels,
                        batch_input_shape) -> Dict[str, Tensor]:
        """Everything after the image tower for a flat list of prompts.

        Returns a dict with decoder-layer-stacked ``logits`` (L, B, Q', 1), ``boxes``
        (L, B, Q', 4) normalised cxcywh, ``presence`` (L, B, 1), and when a mask head exists
        ``pred_masks`` (B, Q', h, w) and ``semantic_seg`` (B, 1, h, w). ``Q'`` is twice the
        number of queries in training (one-to-one half first).
        """
        device = img_feats[-1].device
        img_ids_t = torch.as_tensor(img_ids, dtype=torch.long, device=device)
        # Text tower once per distinct phrase.
        unique = list(dict.fromkeys(texts))
        text_ids = torch.as_tensor([unique.index(t) for t in texts], device=device)
        txt_feats, txt_mask = self.encode_texts(unique)
        txt_feats, txt_mask = txt_feats[:, text_ids], txt_mask[text_ids]

        feat = img_feats[-1]
        h, w = feat.shape[-2:]
        pos = self.position_encoding(feat).to(feat.dtype)
        src = feat.flatten(2).permute(2, 0, 1)[:, img_ids_t]  # (HW, B, C)
        src_pos = pos.flatten(2).permute(2, 0, 1)[:, img_ids_t]

        box_seq, box_mask, box_lab = self._pack_boxes(boxes, box_labels, batch_input_shape,
                                                      device)
        geo, geo_mask = self.geometry_encoder(box_seq.to(src.dtype), box_mask, box_lab, src,
                                              src_pos, (h, w))
        prompt = torch.cat([txt_feats.to(src.dtype), geo], dim=0)
        prompt_mask = torch.cat([txt_mask, geo_mask], dim=1)

        memory, memory_pos = self.encoder(src, src_pos, prompt, prompt_mask)
        dec = self.decoder(memory, memory_pos, (h, w), prompt, prompt_mask)
        logits = self.scoring_head(dec['hs'], prompt, prompt_mask)
        out = dict(logits=logits, boxes=dec['pred_boxes'], presence=dec['presence_logits'])
        if self.mask_head is not None:
            out.update(
                self.mask_head(img_feats[:-1], memory, (h, w), dec['hs'][-1], prompt,
                               prompt_mask, img_ids_t))
        return out

    def _run(self, batch_inputs: Tensor, batch_data_samples: SampleList):
        """Check the input, flatten the prompts and run the network once for all of them.

        Returns ``(img_ids, texts, labels, out)``; ``out`` is ``{}`` when no image has a prompt.
        """
        self._check_inputs(batch_inputs)
        img_ids, texts, labels, boxes, box_labels = self._collect_prompts(batch_data_samples)
        out = {}
        if texts:
            out = self.forward_prompts(self.extract_feat(batch_inputs), img_ids, texts, boxes,
                                       box_labels, tuple(batch_inputs.shape[-2:]))
        return img_ids, texts, labels, out

    def _forward(self, batch_inputs: Tensor, batch_data_samples: OptSampleList = None):
        """Raw network outputs (see :meth:`forward_prompts`) for the prompts of the batch."""
        if batch_data_samples is None:
            raise ValueError('SAM3 needs data samples carrying the prompts (metainfo `texts`)')
        return self._run(batch_inputs, batch_data_samples)[-1]

    def _check_inputs(self, batch_inputs: Tensor) -> None:
        patch = getattr(self.backbone, 'patch_size', 14)
        h, w = batch_inputs.shape[-2:]
        if h % patch or w % patch:
            raise ValueError(
                f'input size {h}x{w} is not a multiple of the patch size {patch}; pad it '
                f'(DetDataPreprocessor(pad_size_divisor={patch})) or resize to a multiple')

    # ------------------------------------------------------------------------------------------
    # inference
    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Fill ``pred_instances`` (bboxes, scores, labels, masks, label_names) per image.

        An image without prompts gets empty predictions.
        """
        img_ids, texts, labels, out = self._run(batch_inputs, batch_data_samples)
        for i, sample in enumerate(batch_data_samples):
            prompt_idx = [p for p, img in enumerate(img_ids) if img == i]
            sample.pred_instances = self._predict_one(out, prompt_idx, texts, labels, sample,
                                                      tuple(batch_inputs.shape[-2:]), rescale,
                                                      batch_inputs.device)
        return batch_data_samples

    def _predict_one(self, out, prompt_idx, texts, labels, sample, batch_input_shape, rescale,
                     device):
        cfg = self.test_cfg
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
        keep_bboxes, keep_scores, keep_labels, keep_names, keep_masks = [], [], [], [], []
        with_masks = cfg.get('with_masks', True) and 'pred_masks' in out
        max_per_prompt = cfg.get('max_per_prompt', -1)
        for p in prompt_idx:
            scores = out['logits'][-1, p, :self.num_queries, 0].sigmoid()
            if out['presence'] is not None:
                scores = scores * out['presence'][-1, p, 0].sigmoid()
            order = scores.argsort(descending=True)
            order = order[scores[order] > cfg['score_thr']] if cfg['score_thr'] > 0 else order
            if max_per_prompt and max_per_prompt > 0:
                order = order[:max_per_prompt]
            boxes = bbox_cxcywh_to_xyxy(out['boxes'][-1, p, order])
            boxes = boxes * boxes.new_tensor([w_in, h_in, w_in, h_in])
            keep_bboxes.append(boxes)
            keep_scores.append(scores[order])
            keep_labels.append(torch.full_like(order, labels[p]))
            keep_names.extend([texts[p]] * len(order))
            if with_masks:
                keep_masks.append(out['pred_masks'][p, order])
        bboxes = torch.cat(keep_bboxes)
        scores = torch.cat(keep_scores)
        order = scores.argsort(descending=True)
        if cfg.get('max_per_img', -1) and cfg['max_per_img'] > 0:
            order = order[:cfg['max_per_img']]
        bboxes, scores = bboxes[order], scores[order]
        results.labels = torch.cat(keep_labels)[order]
        results.label_names = [keep_names[k] for k in order.tolist()]
        if rescale:
            scale_factor = sample.metainfo.get('scale_factor', (1.0, 1.0))
            bboxes = bboxes / bboxes.new_tensor(scale_factor).repeat(2)
            bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, ori_w)
            bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, ori_h)
        else:
            bboxes[:, 0::2] = bboxes[:, 0::2].clamp(0, img_w)
            bboxes[:, 1::2] = bboxes[:, 1::2].clamp(0, img_h)
        results.bboxes = bboxes
        results.scores = scores
        if with_masks:
            mask_logits = torch.cat(keep_masks)[order][None]
            out_h, out_w = (ori_h, ori_w) if rescale else (img_h, img_w)
            if mask_logits.shape[1] == 0:
                results.masks = torch.zeros(0, out_h, out_w, dtype=torch.bool, device=device)
                return results
            if (img_h, img_w) != (h_in, w_in):
                # Remove the batch padding before resizing to the output frame.
                mask_logits = F.interpolate(
                    mask_logits, size=(h_in, w_in), mode='bilinear', align_corners=False)
                mask_logits = mask_logits[..., :img_h, :img_w]
            mask_logits = F.interpolate(
                mask_logits.float(), size=(out_h, out_w), mode='bilinear', align_corners=False)
            results.masks = mask_logits[0].sigmoid() > cfg.get('mask_thr', 0.5)
        return results

    # ------------------------------------------------------------------------------------------
    # training
    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Official SAM 3 losses (one-to-one + one-to-many, auxiliary layers, presence, masks)."""
        if self.criterion is None:
            raise RuntimeError('SAM3.loss needs a `criterion` in the model config')
        img_ids, texts, labels, out = self._run(batch_inputs, batch_data_samples)
        if not texts:
            # Nothing to learn from; keep every parameter in the graph for DDP.
            zero = sum(p.sum() * 0 for p in self.parameters() if p.requires_grad)
            return dict(loss_cls=zero)
        targets = self._prompt_targets(batch_data_samples, img_ids, labels,
                                       tuple(batch_inputs.shape[-2:]),
                                       with_masks='pred_masks' in out)
        return self.criterion(self._criterion_outputs(out), targets)

    def _criterion_outputs(self, out: Dict[str, Tensor]) -> dict:
        """Decoder-layer stacks -> the official output dict (final layer + ``aux_outputs``)."""
        q = self.num_queries
        num_layers = out['logits'].shape[0]
        has_o2m = out['logits'].shape[2] > q

        def layer(idx):
            d = dict(pred_logits=out['logits'][idx, :, :q], pred_boxes=out['boxes'][idx, :, :q])
            if out['presence'] is not None:
                d['presence_logit_dec'] = out['presence'][idx]
            if has_o2m:
                d['pred_logits_o2m'] = out['logits'][idx, :, q:]
                d['pred_boxes_o2m'] = out['boxes'][idx, :, q:]
            return d

        result = layer(num_layers - 1)
        result['aux_outputs'] = [layer(i) for i in range(num_layers - 1)]
        if 'pred_masks' in out:
            result['pred_masks'] = out['pred_masks'][:, :q]
            if has_o2m:
                result['pred_masks_o2m'] = out['pred_masks'][:, q:]
        return result

    def _prompt_targets(self, batch_data_samples, img_ids, labels, batch_input_shape,
                        with_masks) -> List[InstanceData]:
        """Per prompt: the instances of its category, boxes as normalised cxcywh."""
        h, w = batch_input_shape
        targets = []
        for img_id, label in zip(img_ids, labels):
            gt = batch_data_samples[img_id].gt_instances
            keep = (gt.labels == label).nonzero().flatten()
            bboxes = gt.bboxes
            if hasattr(bboxes, 'tensor'):
                bboxes = bboxes.tensor
            bboxes = bboxes[keep].float()
            scale = bboxes.new_tensor([w, h, w, h])
            target = InstanceData(bboxes=bbox_xyxy_to_cxcywh(bboxes / scale).clamp(0, 1))
            if with_masks and 'masks' in gt:
                masks = gt.masks[keep.cpu().numpy()] if len(keep) else None
                if masks is not None:
                    masks = masks.pad((h, w)) if hasattr(masks, 'pad') else masks
                    masks = masks.to_tensor(torch.bool, bboxes.device) if hasattr(
                        masks, 'to_tensor') else torch.as_tensor(masks, device=bboxes.device)
                    target.masks = masks.bool()
                else:
                    target.masks = torch.zeros(0, h, w, dtype=torch.bool, device=bboxes.device)
            targets.append(target)
        return targets
