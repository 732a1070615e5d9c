"""SAM 3 image detector (Segment Anything with Concepts) as an mmdet detector.

Data flow for ``B_img`` images carrying ``B`` prompts in total (one prompt = one noun phrase,
optionally with exemplar boxes)::

    inputs (B_img, 3, H, W) ─ backbone (ViT) ─ neck (simple FPN) ─ levels at strides 3.5, 7, 14
    texts (distinct strings) ─ tokenizer ─ text_encoder ─ (N_text, L, C), gathered per prompt
    stride-14 tokens (HW, B, C) + exemplar boxes ─ geometry_encoder ─ geo tokens (S_g, B, C)
    prompt = [text tokens; geo tokens] (S, B, C) with padding mask (B, S)
    encoder: stride-14 tokens attend to the prompt ─ memory (HW, B, C)
    decoder: Q queries attend to prompt + memory ─ hs (L_dec, B, Q, C), boxes, presence
    bbox_head: scoring (hs vs prompt) ─ logits (L_dec, B, Q, 1); masks from the stride-3.5 and
        stride-7 levels + memory ─ (B, Q, 4H/14, 4W/14); loss / post-processing

Stages, each callable with tensors (the deployed model exports exactly these):
``extract_feat`` (image tower), ``text_encoder`` (token ids -> features), ``forward_transformer``
(geometry encoder, fusion encoder, decoder) and ``bbox_head`` (:class:`SAM3Head`);
``forward_prompt_feats`` chains the last two (in chunks of ``prompts_per_run`` prompts when
asked). The image tower runs once per image and the text tower once per distinct phrase, whatever
the number of prompts; :meth:`SAM3.image_terms` are the parts of the prompt stages that depend on
the image only, for callers that keep them between prompts. Prompts come from each
``DetDataSample`` (see :class:`~mmsam3.models.utils.PromptBatch`).

Interactive segmentation (SAM 3's clicks / box / mask prompts on an image, Meta's
``predict_inst``) is on when the config has ``tracker_neck`` and ``interactive_head``: a second
:class:`SAM3FPN` over the same ViT output (Meta's ``sam2_convs``) feeds
:class:`~mmsam3.models.dense_heads.SAM3InteractiveHead`. :meth:`SAM3.extract_feats` runs the ViT
once for both necks, :meth:`SAM3.extract_tracker_feat` gives the tracker levels alone and
:meth:`SAM3.forward_interactive` answers clicks on them (see docs/interactive.md). Without the
two keys the model is the concept-only detector, unchanged.
"""
import copy
import logging
from typing import Dict, Optional, Sequence, Tuple

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from torch import Tensor

from ..layers.position_encoding import SAM3SinePositionEncoding
from ..utils.prompt_batch import PromptBatch, check_prompts_per_run


@MODELS.register_module()
class SAM3(BaseDetector):
    """SAM 3 promptable concept detector / segmenter.

    Args:
        backbone, neck, text_encoder, geometry_encoder, encoder, decoder (dict): configs of the
            towers and transformer stages (see ``configs/_base_/models/sam3_vit-l.py``).
        bbox_head (dict): :class:`SAM3Head` config (scoring, masks, criterion); its
            ``num_queries`` defaults to the decoder's and ``train_cfg`` / ``test_cfg`` come
            from here, as in mmdet's DETR detectors.
        tokenizer (dict): config of :class:`SAM3Tokenizer`; built lazily on the first text
            prompt, so a model can be built (and loaded) without the BPE file at hand.
        train_cfg, test_cfg (dict, optional): passed to the head (see :class:`SAM3Head`).
        data_preprocessor (dict, optional): mmdet ``DetDataPreprocessor`` config.
        frozen_modules (Sequence[str]): children to freeze for fine-tuning, e.g.
            ``('backbone', 'text_encoder')`` (frozen towers). Their parameters get
            ``requires_grad=False`` (no gradients or optimizer state, and no activations are
            kept for backward) and the modules stay in eval mode (no drop-path / dropout).
        lora (dict, optional): LoRA adapters on the image / text towers, keyword arguments of
            :func:`mmsam3.models.utils.apply_lora` (``r``, ``lora_alpha``, ``lora_dropout``,
            ``towers``); the towers' base weights are frozen.
        tracker_neck (dict, optional): the interactive (tracker) neck, a second ``SAM3FPN``
            on the ViT output: its keys update a copy of ``neck`` (``dict()`` = same sizes).
        interactive_head (dict, optional): :class:`SAM3InteractiveHead` config (needs
            ``tracker_neck``).

    Weights the image model never uses stay in it (official checkpoints load with
    ``strict=True``) and are frozen by the module holding them: the text encoder's
    ``text_projection``, the geometry encoder's point projections, the pixel-decoder stages
    beyond the neck levels. DDP still needs ``find_unused_parameters`` for parameters idle only
    in some steps (box-exemplar pooling, the semantic head without its loss).
    """

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 text_encoder: dict,
                 geometry_encoder: dict,
                 encoder: dict,
                 decoder: dict,
                 bbox_head: dict,
                 tokenizer: dict,
                 train_cfg: Optional[dict] = None,
                 test_cfg: Optional[dict] = None,
                 data_preprocessor: Optional[dict] = None,
                 frozen_modules: Sequence[str] = (),
                 lora: Optional[dict] = None,
                 tracker_neck: Optional[dict] = None,
                 interactive_head: Optional[dict] = None,
                 init_cfg=None):
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.backbone = MODELS.build(backbone)
        self.neck = MODELS.build(neck)
        self.text_encoder = MODELS.build(text_encoder)
        self.geometry_encoder = MODELS.build(geometry_encoder)
        self.encoder = MODELS.build(encoder)
        self.decoder = MODELS.build(decoder)
        bbox_head = copy.deepcopy(bbox_head)
        bbox_head.setdefault('num_queries', self.decoder.num_queries)
        if bbox_head.get('mask_head') is not None:
            # The pixel decoder is fed the neck levels; it freezes the stages they leave idle.
            bbox_head['mask_head'].setdefault('num_feature_levels',
                                              getattr(self.neck, 'num_outs', 3))
        bbox_head.update(train_cfg=train_cfg, test_cfg=test_cfg)
        self.bbox_head = MODELS.build(bbox_head)
        self.tokenizer_cfg = copy.deepcopy(tokenizer)
        self._tokenizer = None
        self.position_encoding = SAM3SinePositionEncoding(num_feats=self.decoder.embed_dims)
        self.train_cfg = train_cfg
        self.test_cfg = test_cfg
        # Built last: a concept-only model draws the same initial weights with or without them.
        if (tracker_neck is None) != (interactive_head is None):
            given = 'tracker_neck' if interactive_head is None else 'interactive_head'
            raise ValueError('SAM3: tracker_neck and interactive_head go together (interactive '
                             f'segmentation needs both); got only {given}')
        self.tracker_neck = self.interactive_head = None
        if tracker_neck is not None:
            tracker_cfg = copy.deepcopy(dict(neck))
            tracker_cfg.update(copy.deepcopy(dict(tracker_neck)))
            self.tracker_neck = MODELS.build(tracker_cfg)
            self.interactive_head = MODELS.build(interactive_head)
        self._register_load_state_dict_pre_hook(self._interactive_weights_hook)
        if lora is not None:
            from ..utils.lora import apply_lora
            apply_lora(self, **lora)
        self.frozen_modules = tuple(frozen_modules)
        self._freeze_modules()

    _INTERACTIVE_PREFIXES = ('tracker_neck.', 'interactive_head.')

    def _interactive_weights_hook(self, state_dict, prefix, local_metadata, strict, missing_keys,
                                  unexpected_keys, error_msgs):
        """Checkpoints with and without the interactive weights load into either model.

        A concept-only model skips ``tracker_neck.*`` / ``interactive_head.*`` of a checkpoint
        (converted from ``sam3.pt``, or trained with clicks); an interactive model loading a
        checkpoint with none of them (an older mmsam3 checkpoint) keeps their current values.
        Either way one warning says what was skipped or is missing.
        """
        from mmengine.logging import print_log

        names = tuple(prefix + p for p in self._INTERACTIVE_PREFIXES)
        present = [k for k in state_dict if k.startswith(names)]
        if not self.with_interactive:
            if present:
                for key in present:
                    del state_dict[key]
                print_log(f'SAM3: skipped {len(present)} interactive-segmentation weights of the '
                          'checkpoint (tracker_neck, interactive_head): this config is '
                          'concept-only (phrases); use an *_interactive config for clicks',
                          logger='current', level=logging.WARNING)
            return
        if present:
            return  # a partial set is reported by load_state_dict as usual
        own = [(k, v) for k, v in self.state_dict().items()
               if k.startswith(self._INTERACTIVE_PREFIXES)]
        for key, value in own:
            state_dict[prefix + key] = value
        print_log(f'SAM3: the checkpoint has no interactive-segmentation weights ({len(own)} '
                  'tensors of tracker_neck / interactive_head missing); they keep their initial '
                  'values, so clicks give untrained masks until a checkpoint with them (e.g. '
                  'converted from sam3.pt) is loaded', logger='current', level=logging.WARNING)

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

    # ------------------------------------------------------------------------------------------
    # stages
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = MODELS.build(self.tokenizer_cfg)
        return self._tokenizer

    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Image tower: the neck levels SAM 3 uses, finest first (strides 3.5, 7 and 14)."""
        return tuple(self.neck(self.backbone(batch_inputs)))

    @property
    def with_interactive(self) -> bool:
        """Whether the model answers clicks / boxes / mask prompts (tracker neck + head)."""
        return getattr(self, 'interactive_head', None) is not None

    def _require_interactive(self):
        if not self.with_interactive:
            raise RuntimeError(
                'this SAM3 model has no interactive head: clicks, boxes and mask prompts need a '
                'config with tracker_neck and interactive_head (e.g. '
                'configs/_base_/models/sam3_vit-l_interactive.py); concept prompts (phrases) '
                'work without them')

    def extract_feats(self, batch_inputs: Tensor,
                      with_tracker: bool = True) -> Tuple[Tuple[Tensor, ...], Optional[tuple]]:
        """One ViT pass for both necks: ``(concept levels, tracker levels)``.

        The concept levels are :meth:`extract_feat`'s; the tracker levels (strides 3.5, 7, 14,
        the input of :meth:`forward_interactive`) are None without a tracker neck or with
        ``with_tracker=False``.
        """
        maps = self.backbone(batch_inputs)
        img_feats = tuple(self.neck(maps))
        tracker_feats = None
        if with_tracker and self.with_interactive:
            tracker_feats = tuple(self.tracker_neck(maps))
        return img_feats, tracker_feats

    def extract_tracker_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Image tower + tracker neck only: the three tracker levels, finest first."""
        self._require_interactive()
        return tuple(self.tracker_neck(self.backbone(batch_inputs)))

    def forward_interactive(self, tracker_feats, point_coords: Optional[Tensor],
                            point_labels: Optional[Tensor], mask_input: Optional[Tensor] = None,
                            multimask_output: bool = True,
                            img_ids: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Answer clicks / boxes / a mask prompt: :meth:`SAM3InteractiveHead.forward` on the
        tracker levels (or their ``image_feats``). Coordinates are model-input pixels; a box is
        two points labelled 2 and 3. Returns ``low_res_logits``, ``iou_pred``,
        ``object_score_logits``, ... (see the head)."""
        self._require_interactive()
        return self.interactive_head(tracker_feats, point_coords, point_labels, mask_input,
                                     multimask_output, img_ids)

    def encode_texts(self, texts: Sequence[str],
                     trim_padding: bool = False) -> Tuple[Tensor, Tensor]:
        """Text tower on phrases: ``(N, L, C)`` features and ``(N, L)`` padding mask.

        With ``trim_padding`` and a causal text encoder (``text_encoder.causal``: a token's
        feature depends on the tokens up to it only) the tower runs on the columns up to the
        longest phrase's last token, and the padding positions get zero features. Nothing
        downstream reads them (every consumer masks padding), so the prompt stages give the
        same results up to rounding, for a fraction of the text tower's work on short phrases.
        """
        device = next(self.text_encoder.parameters()).device
        tokens = self.tokenizer(list(texts)).to(device)
        if not (trim_padding and getattr(self.text_encoder, 'causal', False)):
            return self.text_encoder(tokens)
        used = (tokens != 0).any(0).nonzero()
        length = int(used.max()) + 1 if len(used) else 1
        feats, pad = self.text_encoder(tokens[:, :length])
        full = feats.new_zeros(tokens.shape + feats.shape[-1:])
        full[:, :length] = feats.masked_fill(pad[..., None], 0)
        return full, tokens == 0

    def image_terms(self, img_feats: Sequence[Tensor]) -> Dict[str, object]:
        """The parts of the prompt stages that depend on the image only, for callers that
        answer many prompts on one image (:class:`~mmsam3.apis.SAM3Predictor`): the fusion
        encoder's first self-attention (``encoder_self_attn``) and the pixel decoder's lateral
        terms (``pixel_laterals``). :meth:`forward_prompt_feats` takes them back as
        ``image_terms``; its results are then those without them, up to rounding.
        """
        terms = {}
        feat = img_feats[-1]
        if hasattr(self.encoder, 'first_self_attn'):
            pos = self.position_encoding(feat).to(feat.dtype)
            terms['encoder_self_attn'] = self.encoder.first_self_attn(
                feat.flatten(2).permute(2, 0, 1), pos.flatten(2).permute(2, 0, 1))
        mask_head = getattr(self.bbox_head, 'mask_head', None)
        if mask_head is not None and len(img_feats) > 1:
            terms['pixel_laterals'] = tuple(mask_head.pixel_decoder.lateral_terms(img_feats[:-1]))
        return terms

    def forward_transformer(self, img_feats: Sequence[Tensor], img_ids: Tensor,
                            txt_feats: Tensor, txt_mask: Tensor, boxes: Tensor,
                            box_labels: Tensor, box_mask: Tensor,
                            image_terms: Optional[dict] = None) -> dict:
        """Geometry encoder, fusion encoder and decoder for ``B`` prompts.

        Args:
            img_feats (Sequence[Tensor]): :meth:`extract_feat` output, ``(B_img, C, H_i, W_i)``.
            img_ids (Tensor): ``(B,)`` long, the image of each prompt.
            txt_feats (Tensor): ``(B, L, C)`` text features of each prompt, ``txt_mask``
                ``(B, L)`` bool, True = padding.
            boxes (Tensor): exemplar boxes ``(B, K, 4)`` normalised cxcywh, ``box_labels``
                ``(B, K)`` long (1 positive, 0 negative), ``box_mask`` ``(B, K)`` True =
                padding; ``K`` may be 0 (see :meth:`PromptBatch.pack_boxes`).
            image_terms (dict, optional): :meth:`image_terms` of ``img_feats``, kept between
                calls on the same image.

        Returns:
            dict: the keyword arguments of :meth:`SAM3Head.forward` (decoder outputs ``hs``,
            ``boxes``, ``presence``; ``prompt``, ``prompt_mask``, ``memory``, ``feat_size``,
            the finer levels ``mlvl_feats`` and ``img_ids``).
        """
        feat = img_feats[-1]
        h, w = feat.shape[-2:]
        pos = self.position_encoding(feat).to(feat.dtype)
        img_src = feat.flatten(2).permute(2, 0, 1)  # (HW, B_img, C)
        img_pos = pos.flatten(2).permute(2, 0, 1)
        src, src_pos = img_src[:, img_ids], img_pos[:, img_ids]  # (HW, B, C)
        terms = image_terms or {}
        geo, geo_mask = self.geometry_encoder(
            boxes.transpose(0, 1).to(src.dtype), box_mask, box_labels.transpose(0, 1), src,
            src_pos, (h, w))
        prompt = torch.cat([txt_feats.transpose(0, 1).to(src.dtype), geo], dim=0)
        prompt_mask = torch.cat([txt_mask, geo_mask], dim=1)
        # The encoder's first self-attention runs once per image (it never sees the prompt).
        memory, memory_pos = self.encoder(img_src, img_pos, prompt, prompt_mask, img_ids=img_ids,
                                          first_self_attn=terms.get('encoder_self_attn'))
        dec = self.decoder(memory, memory_pos, (h, w), prompt, prompt_mask)
        return dict(hs=dec['hs'], boxes=dec['pred_boxes'], presence=dec['presence_logits'],
                    prompt=prompt, prompt_mask=prompt_mask, memory=memory, feat_size=(h, w),
                    mlvl_feats=tuple(img_feats[:-1]), img_ids=img_ids,
                    pixel_laterals=terms.get('pixel_laterals'))

    def forward_prompt_feats(self, img_feats: Sequence[Tensor], img_ids: Tensor,
                             txt_feats: Tensor, txt_mask: Tensor, boxes: Tensor,
                             box_labels: Tensor, box_mask: Tensor,
                             image_terms: Optional[dict] = None,
                             prompts_per_run: Optional[int] = None) -> Dict[str, Tensor]:
        """Everything after the towers: :meth:`forward_transformer`, then the head's forward.

        With ``prompts_per_run`` the prompts go through in consecutive chunks of at most that
        many (the image terms computed once, when gradients are off) and the outputs are
        concatenated: the same results, with memory bounded by the chunk (and on a CPU often
        faster: large per-prompt buffers cost page faults).

        Returns the raw outputs of :class:`SAM3Head` (``logits``, ``boxes``, ``presence``,
        ``pred_masks``, ``semantic_seg``).
        """
        prompts_per_run = check_prompts_per_run(prompts_per_run)
        num = len(img_ids)
        if prompts_per_run is None or num <= prompts_per_run:
            return self.bbox_head(**self.forward_transformer(
                img_feats, img_ids, txt_feats, txt_mask, boxes, box_labels, box_mask,
                image_terms))
        if image_terms is None and not torch.is_grad_enabled():
            image_terms = self.image_terms(img_feats)
        chunks = []
        for start in range(0, num, prompts_per_run):
            part = slice(start, start + prompts_per_run)
            chunks.append(self.bbox_head(**self.forward_transformer(
                img_feats, img_ids[part], txt_feats[part], txt_mask[part], boxes[part],
                box_labels[part], box_mask[part], image_terms)))
        return self.bbox_head.concat_outputs(chunks)

    def _head_inputs(self, batch_inputs: Tensor, prompts: PromptBatch) -> dict:
        """Towers and transformer for the prompts of a batch (one path for loss / predict /
        _forward); the image tower runs once per image."""
        return self.forward_transformer(
            self.extract_feat(batch_inputs),
            *prompts.to_tensors(self.encode_texts, batch_inputs.shape[-2:], batch_inputs.device))

    def _prompts(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> PromptBatch:
        self._check_inputs(batch_inputs)
        return PromptBatch.from_data_samples(batch_data_samples)

    def _check_inputs(self, batch_inputs: Tensor) -> None:
        patch = getattr(self.backbone, 'patch_size', 14)
        h, w = batch_inputs.shape[-2:]
        if h % patch or w % patch:
            raise ValueError(
                f'input size {h}x{w} is not a multiple of the patch size {patch}; pad it '
                f'(DetDataPreprocessor(pad_size_divisor={patch})) or resize to a multiple')

    # ------------------------------------------------------------------------------------------
    # the mmdet triad
    def _forward(self, batch_inputs: Tensor,
                 batch_data_samples: OptSampleList = None) -> Dict[str, Tensor]:
        """Raw outputs of the head (see :class:`SAM3Head`) for the prompts of the batch;
        ``{}`` when no image has a prompt."""
        if batch_data_samples is None:
            raise ValueError('SAM3 needs data samples carrying the prompts (metainfo `texts`)')
        prompts = self._prompts(batch_inputs, batch_data_samples)
        if not len(prompts):
            return {}
        return self.bbox_head(**self._head_inputs(batch_inputs, prompts))

    def predict(self,
                batch_inputs: Tensor,
                batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """Fill ``pred_instances`` (bboxes, scores, labels, masks, label_names) per image.

        An image without prompts gets empty predictions.
        """
        prompts = self._prompts(batch_inputs, batch_data_samples)
        batch_input_shape = tuple(batch_inputs.shape[-2:])
        if len(prompts):
            outputs = self.forward_prompt_feats(
                self.extract_feat(batch_inputs),
                *prompts.to_tensors(self.encode_texts, batch_input_shape, batch_inputs.device),
                prompts_per_run=self.bbox_head.test_cfg.get('prompts_per_run'))
            results = self.bbox_head.predict_by_feat(outputs, prompts, batch_data_samples,
                                                     batch_input_shape, rescale)
        else:
            results = self.bbox_head.predict_by_feat({}, prompts, batch_data_samples,
                                                     batch_input_shape, rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Official SAM 3 losses (see :meth:`SAM3Head.loss_by_feat`)."""
        prompts = self._prompts(batch_inputs, batch_data_samples)
        if not len(prompts):
            # Nothing to learn from; keep every parameter in the graph for DDP.
            zero = sum(p.sum() * 0 for p in self.parameters() if p.requires_grad)
            return dict(loss_cls=zero)
        return self.bbox_head.loss(self._head_inputs(batch_inputs, prompts), prompts,
                                   batch_data_samples, tuple(batch_inputs.shape[-2:]))
