"""SAM 3's interactive (click / box / mask) head on images: the path of Meta's
``Sam3Image.predict_inst`` (``SAM3InteractiveImagePredictor`` on an image, no memory).

Data flow for ``B`` prompts on ``B_img`` images::

    tracker neck levels (B_img, C, 4h, 4w), (B_img, C, 2h, 2w), (B_img, C, h, w)
        -> image_feats: image_embed = level_2 + no_mem_embed, high_res = (conv_s0(level_0),
           conv_s1(level_1))          [once per image; the predictor keeps it]
    clicks / box corners (B, N, 2) model-input pixels + labels (B, N), mask prompt (B, 1, 4h, 4w)
        -> SAMPromptEncoder -> sparse (B, N + 1, C), dense (B, C, h, w)
        -> SAMMaskDecoder -> low-res logits (B, M, 4h, 4w), IoU (B, M), object score (B, 1)

``M`` is 3 with ``multimask_output`` and 1 without (output 0, or the stability fallback).
The tensor path has no data-dependent Python branching (training with gradients, export).
:meth:`SAM3InteractiveHead.postprocess_masks` turns low-res logits into image-size masks the
way Meta's predictor does (small background holes filled, bilinear to the original size, > 0).
Parameter names: ``prompt_encoder.*`` = Meta's ``tracker.sam_prompt_encoder.*``,
``mask_decoder.*`` = ``tracker.sam_mask_decoder.*``, ``no_mem_embed`` = ``tracker.no_mem_embed``.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

__all__ = ['SAM3InteractiveHead', 'fill_small_holes']


def fill_small_holes(logits: Tensor, max_area: float, threshold: float = 0.0) -> Tensor:
    """Meta's ``SAM2Transforms.postprocess_masks`` hole filling: background components
    (``logits <= threshold``, 8-connected) of at most ``max_area`` pixels get
    ``threshold + 10``. ``logits``: ``(..., H, W)``. Runs on the CPU (OpenCV)."""
    if max_area <= 0:
        return logits
    import cv2

    flat = logits.detach().float().reshape(-1, *logits.shape[-2:]).cpu()
    fill = torch.zeros(flat.shape, dtype=torch.bool)
    for i, m in enumerate(flat):
        bg = (m <= threshold).numpy().astype(np.uint8)
        num, labels, stats, _ = cv2.connectedComponentsWithStats(bg, connectivity=8)
        if num <= 1:
            continue
        small = np.zeros(num, dtype=bool)
        small[1:] = stats[1:, cv2.CC_STAT_AREA] <= max_area
        fill[i] = torch.from_numpy(small[labels])
    fill = fill.reshape(logits.shape).to(logits.device)
    return torch.where(fill, torch.full_like(logits, threshold + 10.0), logits)


@MODELS.register_module()
class SAM3InteractiveHead(BaseModule):
    """Prompt encoder + mask decoder + ``no_mem_embed``: SAM 3's clicks on one image.

    Args:
        embed_dims (int): Channels of the tracker neck and the decoder (SAM 3: 256).
        image_size (int): Model-input side (SAM 3: 1008); point coordinates refer to it.
        backbone_stride (int): Patch size (14); the feature grid is ``image_size // stride``.
        prompt_encoder (dict): extra :class:`SAMPromptEncoder` arguments (``mask_in_chans``).
        mask_decoder (dict): extra :class:`SAMMaskDecoder` arguments (``transformer`` sizes,
            ``dynamic_multimask_via_stability``, ...).
        mask_threshold (float): logit threshold of the final masks (0).
        max_hole_area (float): background holes up to this many low-res pixels are filled in
            :meth:`postprocess_masks` (Meta's predictor: 256; its CPU fallback without
            scikit-image skips the step, which 0 reproduces).
    """

    def __init__(self,
                 embed_dims: int = 256,
                 image_size: int = 1008,
                 backbone_stride: int = 14,
                 prompt_encoder: Optional[dict] = None,
                 mask_decoder: Optional[dict] = None,
                 mask_threshold: float = 0.0,
                 max_hole_area: float = 256.0,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        grid = image_size // backbone_stride
        self.embed_dims = embed_dims
        self.image_size = image_size
        self.backbone_stride = backbone_stride
        self.feat_size = (grid, grid)
        self.low_res_size = (4 * grid, 4 * grid)
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        pe_cfg = dict(type='SAMPromptEncoder', embed_dims=embed_dims,
                      image_embedding_size=(grid, grid), input_image_size=(image_size, image_size),
                      mask_in_chans=16)
        pe_cfg.update(prompt_encoder or {})
        self.prompt_encoder = MODELS.build(pe_cfg)
        md_cfg = dict(type='SAMMaskDecoder', embed_dims=embed_dims)
        md_cfg.update(mask_decoder or {})
        self.mask_decoder = MODELS.build(md_cfg)
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, embed_dims))
        nn.init.trunc_normal_(self.no_mem_embed, std=0.02)

    # --------------------------------------------------------------------------------------
    def image_feats(self, tracker_feats: Sequence[Tensor]) -> Dict[str, Tensor]:
        """Image-only part, once per image: ``tracker_feats`` = the tracker neck's three levels
        ``(B_img, C, 4h, 4w)``, ``(B_img, C, 2h, 2w)``, ``(B_img, C, h, w)``.

        Returns ``dict(image_embed (B_img, C, h, w), feat_s0 (B_img, C/8, 4h, 4w),
        feat_s1 (B_img, C/4, 2h, 2w))``; in eval mode (not while tracing / exporting) also
        ``feat_s0_blocks`` / ``feat_s1_blocks``, the two skip features in the blocked
        upscaling's order (:meth:`SAMMaskDecoder.block_high_res`), which every later click
        reuses. Every value is a tensor with the images on its first dimension.
        """
        if isinstance(tracker_feats, dict):
            return tracker_feats
        if len(tracker_feats) != 3:
            raise ValueError(f'tracker_feats: expected the 3 tracker-neck levels, got '
                             f'{len(tracker_feats)}')
        s0, s1, embed = tracker_feats
        feat_s0, feat_s1 = self.mask_decoder.project_high_res(s0, s1)
        image_embed = embed + self.no_mem_embed.reshape(1, -1, 1, 1).to(embed.dtype)
        feats = dict(image_embed=image_embed, feat_s0=feat_s0, feat_s1=feat_s1)
        exporting = torch.jit.is_tracing() or torch.jit.is_scripting() or \
            torch.onnx.is_in_onnx_export()
        if not self.training and not exporting and self.mask_decoder.use_high_res_features:
            feats['feat_s0_blocks'], feats['feat_s1_blocks'] = \
                self.mask_decoder.block_high_res(feat_s0, feat_s1)
        return feats

    def forward(self,
                tracker_feats: Union[Sequence[Tensor], Dict[str, Tensor]],
                point_coords: Optional[Tensor],
                point_labels: Optional[Tensor],
                mask_input: Optional[Tensor] = None,
                multimask_output: bool = True,
                img_ids: Optional[Tensor] = None) -> Dict[str, Tensor]:
        """Tensor-level forward (training with gradients, export, the predictor).

        Args:
            tracker_feats: the tracker neck's three levels, or :meth:`image_feats` of them.
            point_coords (Tensor | None): ``(B, N, 2)`` float ``(x, y)`` in model-input pixels
                (the resized ``image_size`` square); a box is two points, top-left then
                bottom-right, labelled 2 and 3.
            point_labels (Tensor | None): ``(B, N)`` int: -1 padding, 0 negative, 1 positive,
                2 / 3 box corners.
            mask_input (Tensor | None): ``(B, 1, 4h, 4w)`` mask logits, e.g. the previous
                round's ``low_res_logits`` of the chosen mask (288 x 288 for SAM 3).
            multimask_output (bool): 3 candidate masks (True) or one.
            img_ids (Tensor | None): ``(B,)`` long, the image of each prompt; default: prompt
                ``i`` on image ``i`` (or every prompt on the one image when ``B_img == 1``).

        Returns:
            dict: ``low_res_logits (B, M, 4h, 4w)``, ``iou_pred (B, M)``,
            ``object_score_logits (B, 1)``, ``all_low_res_logits (B, 4, 4h, 4w)`` and
            ``all_iou_pred (B, 4)`` (single-mask output first), ``sam_tokens``.
        """
        feats = self.image_feats(tracker_feats)
        if point_coords is not None:
            bs = point_coords.shape[0]
            if point_labels is None or point_labels.shape != point_coords.shape[:2]:
                raise ValueError('point_labels must be (B, N) for point_coords (B, N, 2); got '
                                 f'{None if point_labels is None else tuple(point_labels.shape)}')
        elif mask_input is not None:
            bs = mask_input.shape[0]
        else:
            raise ValueError('SAM3InteractiveHead needs points (clicks / box corners) or a '
                             'mask prompt')
        if mask_input is not None and (mask_input.dim() != 4 or mask_input.shape[1] != 1 or
                                       tuple(mask_input.shape[-2:]) != self.low_res_size):
            raise ValueError(f'mask_input must be (B, 1, {self.low_res_size[0]}, '
                             f'{self.low_res_size[1]}) low-res logits; got '
                             f'{tuple(mask_input.shape)}')
        image_embed, feat_s0, feat_s1 = feats['image_embed'], feats['feat_s0'], feats['feat_s1']
        # The blocked upscaling where every prompt is on the one image (the predictor, the
        # click simulator); the skip features broadcast over the prompts.
        blocks = None
        if 'feat_s0_blocks' in feats and img_ids is None and image_embed.shape[0] == 1:
            blocks = (feats['feat_s0_blocks'], feats['feat_s1_blocks'])
        if img_ids is not None:
            image_embed, feat_s0, feat_s1 = (x[img_ids] for x in (image_embed, feat_s0, feat_s1))
        elif image_embed.shape[0] != bs:
            if image_embed.shape[0] != 1:
                raise ValueError(f'{bs} prompts on {image_embed.shape[0]} images: pass img_ids')
            image_embed, feat_s0, feat_s1 = (x.expand(bs, -1, -1, -1)
                                             for x in (image_embed, feat_s0, feat_s1))
        sparse, dense = self.prompt_encoder(point_coords, point_labels, mask_input)
        out = self.mask_decoder(image_embed, self.prompt_encoder.get_dense_pe().to(image_embed),
                                sparse.to(image_embed.dtype), dense.to(image_embed.dtype),
                                multimask_output=multimask_output,
                                high_res_features=(feat_s0, feat_s1),
                                high_res_blocks=blocks)
        return dict(low_res_logits=out['masks'], iou_pred=out['iou_pred'],
                    object_score_logits=out['object_score_logits'],
                    all_low_res_logits=out['all_masks'], all_iou_pred=out['all_iou_pred'],
                    sam_tokens=out['sam_tokens'])

    # --------------------------------------------------------------------------------------
    @staticmethod
    def box_to_points(boxes: Tensor) -> Tuple[Tensor, Tensor]:
        """``(B, 4)`` xyxy boxes -> corner points ``(B, 2, 2)`` and labels ``(B, 2)`` = 2, 3."""
        points = boxes.reshape(-1, 2, 2)
        labels = torch.tensor([[2, 3]], dtype=torch.int32, device=boxes.device)
        return points, labels.expand(points.shape[0], -1)

    def postprocess_masks(self, low_res_logits: Tensor, ori_shape: Tuple[int, int],
                          max_hole_area: Optional[float] = None,
                          return_logits: bool = False) -> Tensor:
        """Low-res logits ``(B, M, 4h, 4w)`` -> ``(B, M, H, W)`` masks of the original image
        (Meta's ``SAM2Transforms.postprocess_masks``: hole filling, bilinear, > threshold)."""
        area = self.max_hole_area if max_hole_area is None else max_hole_area
        masks = fill_small_holes(low_res_logits.float(), area, self.mask_threshold)
        masks = F.interpolate(masks, tuple(int(s) for s in ori_shape), mode='bilinear',
                              align_corners=False)
        return masks if return_logits else masks > self.mask_threshold

    def image_masks(self, low_res_logits: Tensor, ori_shape: Tuple[int, int],
                    input_shape: Tuple[int, int], resized_shape: Tuple[int, int]) -> Tensor:
        """Low-res logits ``(B, M, 4h, 4w)`` -> ``(B, M, H, W)`` boolean masks of the original
        image, for an image resized to ``resized_shape`` inside a network input of
        ``input_shape`` (the rest padding): back to the network frame, the padding dropped,
        then :meth:`postprocess_masks` to ``ori_shape``. Without padding this is
        :meth:`postprocess_masks` alone."""
        if tuple(int(s) for s in resized_shape) == tuple(int(s) for s in input_shape):
            return self.postprocess_masks(low_res_logits, ori_shape)
        in_h, in_w = (int(s) for s in resized_shape)
        low = fill_small_holes(low_res_logits.float(), self.max_hole_area, self.mask_threshold)
        low = F.interpolate(low, tuple(int(s) for s in input_shape), mode='bilinear',
                            align_corners=False)[..., :in_h, :in_w]
        return self.postprocess_masks(low, ori_shape, max_hole_area=0)
