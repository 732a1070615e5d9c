"""Interactive SAM 3: encode an image once, then answer any number of prompts from its features.

    predictor = SAM3Predictor('configs/sam3/sam3_vit-l_zeroshot_coco.py',
                              weights='checkpoints/sam3_vit-l_mmsam3.pth', dtype='bf16')
    predictor.set_image('demo.jpg')                  # image tower: once
    result = predictor.predict(texts='fish . shark')  # text tower + transformer + heads
    result = predictor.predict(texts='fish', boxes=[[10, 20, 80, 90]], box_labels=[1])

``set_image`` runs the config's test pipeline (resize, pack), the data preprocessor (normalise,
pad) and the image tower, and keeps the three neck levels, the prompt stages' image-only terms
(:meth:`SAM3.image_terms`: the fusion encoder's first self-attention, the pixel decoder's
lateral convolutions) and the sample's metainfo. ``predict`` runs the detector's prompt stages
on them (:meth:`SAM3.encode_texts`, :meth:`SAM3.forward_prompt_feats`,
:meth:`SAM3Head.predict_by_feat`), so its results are those of ``SAM3.predict`` / mmdet's
``DetInferencer`` on the same image and phrases (up to rounding). Text features are kept per
phrase in a bounded LRU cache; the text tower skips the trailing padding of the phrases it
encodes (``encode_texts(trim_padding=True)``).

Clicks, a box and a mask prompt (SAM 3's interactive segmentation, Meta's ``predict_inst``) need
a config with the interactive head (``configs/_base_/models/sam3_vit-l_interactive.py``); the
same ViT pass serves them (``set_image`` also runs the tracker neck)::

    predictor.set_image('demo.jpg')
    out = predictor.predict(points=[[500, 375]], point_labels=[1])     # 3 masks, IoU scores
    out = predictor.predict(points=[[500, 375], [620, 300]], point_labels=[1, 0],
                            multimask_output=False, refine=True)      # previous logits as prompt
    out = predictor.predict(box=[425, 600, 700, 875])

See docs/interactive.md.
"""
import copy
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmdet.structures import DetDataSample
from torch import Tensor, nn

from ..models.utils.prompt_batch import PromptBatch, check_prompts_per_run
from ..utils.inference_precision import (autocast_context, inference_dtype_from_cfg,
                                         inference_dtype_of, resolve_dtype, set_inference_dtype)
from ..utils.click_prompt import check_click_prompts, click_round_result
from ..utils.text_prompt import parse_text_prompt

__all__ = ['SAM3Predictor']

# The phrase the official processor pairs with box-only prompts.
BOX_ONLY_PHRASE = 'visual'


def _inference_pipeline(cfg) -> list:
    """The test pipeline for in-memory or file images (as ``DetInferencer`` builds it).

    ``LoadImageFromFile`` becomes ``mmdet.InferencerLoader`` (paths and arrays), annotation
    loading is dropped; a config without a test dataloader gets the zero-shot pipeline: the
    square ``TorchvisionResize`` to the backbone's ``img_size`` (Meta's processor resize) and
    :class:`PackSAM3Inputs`.
    """
    dataloader = cfg.get('test_dataloader', None)
    if dataloader is None:
        size = cfg.model.backbone.get('img_size', 1008)
        return [dict(type='mmdet.InferencerLoader'),
                dict(type='TorchvisionResize', scale=(size, size), keep_ratio=False),
                dict(type='PackSAM3Inputs')]
    pipeline = []
    for t in copy.deepcopy(list(dataloader.dataset.pipeline)):
        kind = t['type'] if isinstance(t['type'], str) else t['type'].__name__
        if kind.split('.')[-1] == 'LoadAnnotations':
            continue
        if kind.split('.')[-1] == 'LoadImageFromFile':
            t = dict(type='mmdet.InferencerLoader',
                     **{k: v for k, v in t.items() if k != 'type'})
        pipeline.append(t)
    return pipeline


class SAM3Predictor:
    """Image-once, prompt-many inference with a SAM 3 detector.

    Args:
        model_or_config: a config file / :class:`mmengine.Config` (the model is built, the
            weights loaded), or a built ``SAM3`` carrying its config as ``model.cfg`` (what
            ``mmdet.apis.init_detector`` returns).
        weights (str, optional): checkpoint for a config (default: the config's ``load_from``;
            none: random weights, with mmdet's warning).
        device (str, optional): default ``cuda:0`` when CUDA is available, else ``cpu``; with a
            built model, its device.
        dtype (str | torch.dtype, optional): ``float32`` / ``bfloat16`` / ``float16`` (or
            ``fp32`` / ``bf16`` / ``fp16``); default the config's ``model.test_cfg.dtype``, else
            fp32. Applied to the model with :func:`set_inference_dtype`.
        text_cache_size (int): phrases whose text features are kept (least recently used
            dropped first).
        prompts_per_run (int, optional): prompts per run of the prompt stages (all phrases
            of a call still share one text-tower run). Default: the config's
            ``model.test_cfg.prompts_per_run`` if set, else 1 on a CPU (there one prompt at a
            time is faster than a batch: the batch's large buffers cost page faults; see
            docs/benchmarks.md) and all at once on a GPU.
    """

    def __init__(self,
                 model_or_config,
                 weights: Optional[str] = None,
                 device: Optional[str] = None,
                 dtype: Union[str, torch.dtype, None] = None,
                 text_cache_size: int = 256,
                 prompts_per_run: Optional[int] = None):
        if text_cache_size < 0:
            raise ValueError(f'text_cache_size must be >= 0, got {text_cache_size}')
        prompts_per_run = check_prompts_per_run(prompts_per_run)
        if isinstance(model_or_config, nn.Module):
            model = model_or_config
            cfg = getattr(model, 'cfg', None)
            if cfg is None:
                raise ValueError('SAM3Predictor got a model without `model.cfg`; build it with '
                                 'mmdet.apis.init_detector(config, weights) or pass the config')
            if device is not None:
                model.to(device)
            if dtype is None:
                dtype = inference_dtype_of(model)
        else:
            from mmdet.apis import init_detector
            from mmengine.config import Config

            cfg = (Config.fromfile(model_or_config) if isinstance(model_or_config, str) else
                   copy.deepcopy(model_or_config))
            if device is None:
                device = 'cuda:0' if torch.cuda.is_available() else 'cpu'
            if dtype is None:
                dtype = inference_dtype_from_cfg(cfg)
            resolve_dtype(dtype)  # refuse a bad dtype before the (slow) build
            model = init_detector(cfg, weights or cfg.get('load_from', None), device=device,
                                  palette='random')
        for stage in ('extract_feat', 'image_terms', 'encode_texts', 'forward_prompt_feats',
                      'bbox_head'):
            if not hasattr(model, stage):
                raise TypeError(f'{type(model).__name__} has no `{stage}`: SAM3Predictor needs '
                                'a SAM3 detector')
        self.model = model.eval()
        self.cfg = cfg
        self.dtype = resolve_dtype(dtype)
        set_inference_dtype(self.model, self.dtype)
        from mmcv.transforms import Compose
        from mmengine.registry import init_default_scope
        init_default_scope(cfg.get('default_scope', 'mmdet') or 'mmdet')
        self.pipeline = Compose(_inference_pipeline(cfg))
        self.text_cache_size = text_cache_size
        if prompts_per_run is None:
            prompts_per_run = self.model.bbox_head.test_cfg.get('prompts_per_run')
        if prompts_per_run is None and self.device.type == 'cpu':
            prompts_per_run = 1
        self.prompts_per_run = prompts_per_run
        self._text_cache: 'OrderedDict[str, Tuple[Tensor, Tensor]]' = OrderedDict()
        self.text_cache_hits = 0
        self.text_cache_misses = 0
        self.reset_image()

    # ------------------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _autocast(self):
        return autocast_context(self.device, self.dtype)

    def reset_image(self) -> None:
        """Forget the image set last (its features, metainfo and click state)."""
        self.img_feats: Optional[Tuple[Tensor, ...]] = None
        self.image_terms: Optional[dict] = None
        self.tracker_feats: Optional[Dict[str, Tensor]] = None
        self._metainfo: Optional[dict] = None
        self._input_shape: Optional[Tuple[int, int]] = None
        self.reset_clicks()

    def reset_clicks(self) -> None:
        """Forget the previous click round's logits (``refine=True`` starts afresh)."""
        self.previous_logits: Optional[np.ndarray] = None

    @property
    def image_size(self) -> Optional[Tuple[int, int]]:
        """``(height, width)`` of the image given to :meth:`set_image` (None before)."""
        return None if self._metainfo is None else tuple(self._metainfo['ori_shape'][:2])

    @staticmethod
    def _as_pipeline_input(img) -> dict:
        if isinstance(img, str):
            return dict(img_path=img)
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with mmcv
            Image = None
        if Image is not None and isinstance(img, Image.Image):
            img = np.ascontiguousarray(np.asarray(img.convert('RGB'))[:, :, ::-1])
        if isinstance(img, np.ndarray):
            if img.ndim == 2:
                img = np.repeat(img[:, :, None], 3, axis=2)
            if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
                raise ValueError(f'image array must be (H, W, 3) BGR (as mmcv.imread gives) or '
                                 f'(H, W) grey, got shape {img.shape}')
            if img.dtype != np.uint8:
                # A float picture in [0, 1] would pass through the pipeline as a near-black one.
                hint = (' (values in [0, 1]: use (img * 255).round().astype(np.uint8))'
                        if img.dtype.kind == 'f' and img.size and float(np.nanmax(img)) <= 1.0
                        else '')
                raise ValueError(f'image array must be uint8 in 0..255, got {img.dtype}{hint}')
            return dict(img=img)
        raise TypeError(f'set_image takes a file path, a BGR numpy array or a PIL image, not '
                        f'{type(img).__name__}')

    @torch.no_grad()
    def set_image(self, img) -> 'SAM3Predictor':
        """Run the test pipeline and the image tower on ``img``; keep the features.

        Args:
            img: a file path, an ``(H, W, 3)`` uint8 BGR array (``mmcv.imread``), an ``(H, W)``
                grey array, or a PIL image (any mode; converted to RGB).
        """
        inputs = self._as_pipeline_input(img)
        inputs.update(img_id=0, text=[BOX_ONLY_PHRASE])
        data = self.pipeline(inputs)
        batch = self.model.data_preprocessor(
            dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
        images, sample = batch['inputs'], batch['data_samples'][0]
        patch = getattr(getattr(self.model, 'backbone', None), 'patch_size', 14)
        if images.shape[-2] % patch or images.shape[-1] % patch:
            raise ValueError(f'network input {tuple(images.shape[-2:])} is not a multiple of the '
                             f'patch size {patch}; pad it (DetDataPreprocessor(pad_size_divisor='
                             f'{patch})) or resize to a multiple')
        interactive = getattr(self.model, 'with_interactive', False)
        with self._autocast():
            if interactive:
                # One ViT pass for both necks; the click head's image-only part once per image.
                img_feats, tracker_levels = self.model.extract_feats(images)
                tracker_feats = self.model.interactive_head.image_feats(tracker_levels)
            else:
                img_feats, tracker_feats = self.model.extract_feat(images), None
            img_feats = tuple(img_feats)
            image_terms = self.model.image_terms(img_feats)
        if tracker_feats is not None:
            head = self.model.interactive_head
            got = tuple(tracker_feats['image_embed'].shape[-2:])
            if got != tuple(head.feat_size):
                raise ValueError(
                    f'the interactive head needs a {head.image_size}x{head.image_size} network '
                    f'input (a {head.feat_size[0]}x{head.feat_size[1]} feature grid); the '
                    f"config's pipeline gives {tuple(images.shape[-2:])}")
        self.reset_image()
        self.img_feats, self.image_terms, self.tracker_feats = img_feats, image_terms, tracker_feats
        meta = dict(sample.metainfo)
        for key in ('texts', 'text', 'prompt_labels', 'prompt_boxes', 'prompt_box_labels'):
            meta.pop(key, None)
        self._metainfo = meta
        self._input_shape = tuple(images.shape[-2:])
        return self

    # ------------------------------------------------------------------------------------------
    def cache_info(self) -> Dict[str, int]:
        """Text-feature cache: ``hits``, ``misses``, ``size``, ``maxsize``."""
        return dict(hits=self.text_cache_hits, misses=self.text_cache_misses,
                    size=len(self._text_cache), maxsize=self.text_cache_size)

    def clear_text_cache(self) -> None:
        self._text_cache.clear()
        self.text_cache_hits = self.text_cache_misses = 0

    def _text_features(self, phrases: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """``(N, L, C)`` features and ``(N, L)`` padding masks of distinct ``phrases``; the
        uncached ones go through the text tower together."""
        missing = [p for p in phrases if p not in self._text_cache]
        self.text_cache_hits += len(phrases) - len(missing)
        self.text_cache_misses += len(missing)
        fresh = {}
        if missing:
            with self._autocast():
                feats, masks = self.model.encode_texts(missing, trim_padding=True)
            fresh = {p: (feats[i], masks[i]) for i, p in enumerate(missing)}
        out = [fresh[p] if p in fresh else self._text_cache[p] for p in phrases]
        for p in phrases:  # most recently used last
            if p in fresh:
                self._text_cache[p] = fresh[p]
            self._text_cache.move_to_end(p)
        while len(self._text_cache) > self.text_cache_size:
            self._text_cache.popitem(last=False)
        return torch.stack([f for f, _ in out]), torch.stack([m for _, m in out])

    def _input_boxes(self, boxes, box_labels) -> Tuple[Optional[Tensor], Optional[Tensor]]:
        """Exemplar boxes in image pixels -> network-input pixels, checked against the image."""
        if boxes is None or len(boxes) == 0:
            if box_labels is not None and len(box_labels):
                raise ValueError('box_labels given without boxes')
            return None, None
        boxes = torch.as_tensor(np.asarray(boxes, dtype=np.float32))
        if boxes.ndim == 1 and boxes.numel() % 4 == 0:
            boxes = boxes.reshape(-1, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f'boxes must be (K, 4) x1 y1 x2 y2 image pixels, got shape '
                             f'{tuple(boxes.shape)}')
        if not torch.isfinite(boxes).all():
            raise ValueError(f'boxes contain NaN / inf: {boxes.tolist()}')
        h, w = self.image_size
        if (boxes[:, 2] <= boxes[:, 0]).any() or (boxes[:, 3] <= boxes[:, 1]).any():
            raise ValueError(f'boxes must have x2 > x1 and y2 > y1 (x1 y1 x2 y2), got '
                             f'{boxes.tolist()}')
        tol = 1.0
        if (boxes[:, :2] < -tol).any() or (boxes[:, 2] > w + tol).any() or \
                (boxes[:, 3] > h + tol).any():
            raise ValueError(
                f'boxes {boxes.tolist()} reach outside the {w}x{h} (width x height) image given '
                'to set_image(); boxes are x1 y1 x2 y2 pixels of that image: call set_image() '
                'with the image they were drawn on')
        if box_labels is None:
            labels = torch.ones(len(boxes), dtype=torch.long)
        else:
            labels = torch.as_tensor(np.asarray(box_labels)).long().reshape(-1)
            if len(labels) != len(boxes):
                raise ValueError(f'{len(boxes)} boxes but {len(labels)} box_labels')
            if not ((labels == 0) | (labels == 1)).all():
                raise ValueError(f'box_labels must be 1 (positive) or 0 (negative), got '
                                 f'{labels.tolist()}')
        sx, sy = self._metainfo.get('scale_factor', (1.0, 1.0))[:2]
        return boxes * torch.tensor([sx, sy, sx, sy]), labels

    def _sample(self, texts: List[str], boxes, labels) -> DetDataSample:
        meta = dict(self._metainfo, texts=list(texts), prompt_labels=list(range(len(texts))))
        if boxes is not None:
            meta.update(prompt_boxes=[boxes] * len(texts),
                        prompt_box_labels=[labels] * len(texts))
        return DetDataSample(metainfo=meta)

    @torch.no_grad()
    def predict(self,
                texts: Union[str, Sequence[str], None] = None,
                boxes=None,
                box_labels=None,
                return_datasample: bool = False,
                *,
                points=None,
                point_labels=None,
                box=None,
                mask_input=None,
                multimask_output: bool = True,
                refine: bool = False):
        """Detect and segment the prompts on the image set last: phrases / exemplar boxes
        (concept prompts), or clicks / a box / a mask (interactive prompts, one object).

        Interactive prompts (``points``, ``point_labels``, ``box``, ``mask_input``,
        ``multimask_output``, ``refine``) go to :meth:`predict_clicks`; they cannot be mixed
        with ``texts`` / ``boxes`` in one call.

        Args:
            texts: phrases, a list or one string split at ``' . '`` (``'fish . shark'``); prompt
                ``i`` predicts label ``i``. None / empty with ``boxes``: box-only prompting
                (the phrase ``'visual'``).
            boxes: ``(K, 4)`` exemplar boxes, x1 y1 x2 y2 in pixels of the image given to
                :meth:`set_image`, used by every prompt.
            box_labels: ``(K,)`` 1 (positive, default) or 0 (negative).
            return_datasample: return the ``DetDataSample`` (``pred_instances``) instead of
                arrays.

        Returns:
            dict: ``bboxes (N, 4)`` float32 xyxy image pixels, ``scores (N,)`` float32
            (``sigmoid(logit) * sigmoid(presence)``, sorted), ``labels (N,)`` int64,
            ``label_names`` (list of N phrases) and, with a mask head, ``masks (N, H, W)`` bool;
            or the ``DetDataSample`` (tensors on the model's device).

        Raises:
            RuntimeError: before :meth:`set_image`. ValueError: no prompt, boxes outside the
            image, labels without boxes.
        """
        interactive = (points is not None or point_labels is not None or box is not None or
                       mask_input is not None or refine)
        if interactive:
            if texts is not None or boxes is not None or box_labels is not None:
                raise ValueError(
                    'predict(): concept prompts (texts / boxes / box_labels: every instance of a '
                    'phrase) and interactive prompts (points / point_labels / box / mask_input: '
                    'one object) go in separate calls')
            if return_datasample:
                raise ValueError('return_datasample is for concept prompts')
            return self.predict_clicks(points, point_labels, box, mask_input, multimask_output,
                                       refine)
        if self.img_feats is None:
            raise RuntimeError('SAM3Predictor.predict() needs an image: call '
                               'predictor.set_image(img) first')
        phrases = [] if texts is None else parse_text_prompt(texts)
        boxes, labels = self._input_boxes(boxes, box_labels)
        if not phrases:
            if boxes is None:
                raise ValueError('predict() needs a phrase (texts=...) or exemplar boxes '
                                 '(boxes=...)')
            phrases = [BOX_ONLY_PHRASE]
        sample = self._sample(phrases, boxes, labels)
        prompts = PromptBatch.from_data_samples([sample])
        device = self.device
        tensors = prompts.to_tensors(self._text_features, self._input_shape, device)
        with self._autocast():
            outputs = self.model.forward_prompt_feats(self.img_feats, *tensors,
                                                      image_terms=self.image_terms,
                                                      prompts_per_run=self.prompts_per_run)
        outputs = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v
                   for k, v in outputs.items()}
        results = self.model.bbox_head.predict_by_feat(outputs, prompts, [sample],
                                                       self._input_shape, rescale=True)
        pred = self.model.add_pred_to_datasample([sample], results)[0]
        if return_datasample:
            return pred
        return self.to_arrays(pred)

    # ------------------------------------------------------------------------------------------
    # interactive prompts (clicks, a box, a mask)
    @property
    def low_res_size(self) -> Optional[Tuple[int, int]]:
        """``(h, w)`` of the low-resolution logits / mask prompts (288 x 288 for SAM 3)."""
        head = getattr(self.model, 'interactive_head', None)
        return None if head is None else tuple(head.low_res_size)

    def _click_inputs(self, points, point_labels, box, mask_input, refine):
        """Checked prompts in image pixels (nothing is changed on failure)."""
        if not getattr(self.model, 'with_interactive', False):
            raise RuntimeError(
                'this model has no interactive head, so it cannot answer clicks, boxes or mask '
                'prompts: use a config with tracker_neck and interactive_head (e.g. '
                'configs/_base_/models/sam3_vit-l_interactive.py) and a checkpoint converted '
                'from sam3.pt; phrases (texts=...) work with this one')
        if self.tracker_feats is None:
            raise RuntimeError('SAM3Predictor.predict() needs an image: call '
                               'predictor.set_image(img) first')
        coords, labels, mask = check_click_prompts(points, point_labels, box, mask_input, refine,
                                                   self.image_size, self.low_res_size,
                                                   self.previous_logits)
        if mask is not None:
            mask = torch.as_tensor(mask)[None]
        return coords, labels, mask

    @torch.no_grad()
    def predict_clicks(self, points=None, point_labels=None, box=None, mask_input=None,
                       multimask_output: bool = True, refine: bool = False) -> dict:
        """One object's mask from clicks / a box / a mask prompt on the image set last
        (Meta's ``Sam3Image.predict_inst``); also reached through :meth:`predict`.

        Args:
            points: ``(N, 2)`` x y pixels of the image given to :meth:`set_image`.
            point_labels: ``(N,)`` 1 positive, 0 negative.
            box: ``[x1, y1, x2, y2]`` pixels (its corners go before the clicks, as in Meta's).
            mask_input: ``(1, h, w)`` low-resolution logits of a previous round (``h = w =
                288`` for SAM 3), e.g. ``out['low_res_logits'][[out['scores'].argmax()]]``.
            multimask_output (bool): 3 candidate masks (for one ambiguous click) or 1.
            refine (bool): without ``mask_input``, use the previous round's best logits (kept
                by the predictor) as the mask prompt.

        Returns:
            dict: ``masks (C, H, W)`` bool at the image's size, ``scores (C,)`` float32
            predicted IoU, ``low_res_logits (C, h, w)`` float32 (clamped to +-32, as Meta's),
            ``object_score (float)`` logit; ``C`` = 3 or 1. The best mask's low-res logits
            are kept for ``refine``.

        Raises:
            RuntimeError: before :meth:`set_image`, or a model without the interactive head.
            ValueError: points outside the image / NaN / labels other than 0 and 1, a box with
            no area or outside the image, a mask prompt of the wrong size. Nothing is changed.
        """
        coords, labels, mask = self._click_inputs(points, point_labels, box, mask_input, refine)
        device = self.device
        pts = lbl = None
        if coords is not None:
            # Image pixels -> network-input pixels, in Meta's operation order (x / w * size):
            # the resized image (before any padding) is ``img_shape``.
            h, w = self.image_size
            in_h, in_w = self._metainfo.get('img_shape', self._input_shape)[:2]
            pts = coords / np.array([w, h]) * np.array([in_w, in_h])
            pts = torch.as_tensor(pts.astype(np.float32), device=device)[None]
            lbl = torch.as_tensor(labels, dtype=torch.int32, device=device)[None]
        if mask is not None:
            mask = mask.to(device)
        head = self.model.interactive_head
        with self._autocast():
            out = head(self.tracker_feats, pts, lbl, mask, multimask_output)
        low = out['low_res_logits'].float()
        result, self.previous_logits = click_round_result(
            self._low_res_to_image(low), low, out['iou_pred'], out['object_score_logits'])
        return result

    def _low_res_to_image(self, low: Tensor) -> Tensor:
        """``(1, C, h, w)`` logits -> ``(1, C, H, W)`` bool masks of the original image."""
        resized = self._metainfo.get('img_shape', self._input_shape)[:2]
        return self.model.interactive_head.image_masks(low, self.image_size, self._input_shape, resized)

    @staticmethod
    def to_arrays(pred: DetDataSample) -> dict:
        """``pred_instances`` as numpy arrays (see :meth:`predict`)."""
        inst = pred.pred_instances
        out = dict(bboxes=inst.bboxes.float().cpu().numpy(),
                   scores=inst.scores.float().cpu().numpy(),
                   labels=inst.labels.cpu().numpy(), label_names=list(inst.label_names))
        if 'masks' in inst:
            out['masks'] = inst.masks.cpu().numpy().astype(bool)
        return out
