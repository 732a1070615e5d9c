"""The three graphs SAM 3 is deployed as: vision tower, text tower, prompt decoder.

Splitting the model keeps the prompt a run-time input (a new phrase runs the text graph, or comes
from a :class:`TextFeatureCache`, never a new export), runs the vision graph once for any number
of prompts on an image, and keeps each file under protobuf's 2 GB limit. The tokenizer, score
threshold, top-k and mask resizing stay in Python (``SAM3Head.predict_by_feat``).

* ``vision_tower``: ``image (1, 3, H, W)`` float, normalised -> ``feat_s4 (1, C, 4H/14, 4W/14)``,
  ``feat_s8 (1, C, 2H/14, 2W/14)``, ``feat_s16 (1, C, H/14, W/14)``.
* ``text_tower``: ``token_ids (N, 32)`` int64 -> ``text_feats (N, 32, C)`` float,
  ``text_mask (N, 32)`` bool (True = pad).
* ``prompt_decoder``: the three ``feat_*``, ``text_feats``, ``text_mask``, ``boxes (N, K, 4)``
  cxcywh in [0, 1], ``box_labels (N, K)`` int64, ``box_mask (N, K)`` bool (True = padding) ->
  ``logits (1, N, Q, 1)``, ``pred_boxes (1, N, Q, 4)`` cxcywh in [0, 1], ``presence (1, N, 1)``,
  ``pred_masks (N, Q, 4H/14, 4W/14)``, ``semantic_seg (N, 1, 4H/14, 4W/14)``.

``N`` (prompts) and ``K`` (exemplar boxes, >= 1: a prompt without boxes gets one padding box) are
dynamic; the image size is fixed at export (static deploy configs). The decoder outputs are the
final decoder layer only, with a leading layer axis of 1, so they are exactly the raw outputs
``SAM3Head.predict_by_feat`` takes. One decoder call serves the prompts of one image.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

__all__ = [
    'GRAPH_NAMES', 'GraphSpec', 'VisionTowerGraph', 'TextTowerGraph', 'PromptDecoderGraph',
    'graph_specs'
]

GRAPH_NAMES = ('vision_tower', 'text_tower', 'prompt_decoder')
FEAT_NAMES = ('feat_s4', 'feat_s8', 'feat_s16')
# Graph output names; 'boxes' is already an input name (ONNX names are unique), so the decoder's
# boxes come out as 'pred_boxes' and OUTPUT_TO_HEAD_KEY maps them back to SAM3Head's key.
DECODER_OUTPUTS = ('logits', 'pred_boxes', 'presence', 'pred_masks', 'semantic_seg')
OUTPUT_TO_HEAD_KEY = {'pred_boxes': 'boxes'}


class VisionTowerGraph(nn.Module):
    """ViT + neck: ``image (1, 3, H, W)`` -> the three neck levels (``model.extract_feat``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        return tuple(self.model.extract_feat(image))


class TextTowerGraph(nn.Module):
    """Text encoder: ``token_ids (N, 32)`` -> ``text_feats (N, 32, C)``, ``text_mask (N, 32)``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.text_encoder = model.text_encoder

    def forward(self, token_ids: Tensor) -> Tuple[Tensor, Tensor]:
        feats, mask = self.text_encoder(token_ids)
        return feats, mask


class PromptDecoderGraph(nn.Module):
    """Geometry + fusion encoder, decoder and head for the prompts of one image.

    ``model.forward_prompt_feats`` with every prompt on image 0; see the module table.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, feat_s4: Tensor, feat_s8: Tensor, feat_s16: Tensor, text_feats: Tensor,
                text_mask: Tensor, boxes: Tensor, box_labels: Tensor,
                box_mask: Tensor) -> Tuple[Tensor, ...]:
        # One image per call: every prompt reads image 0 (a Shape -> ConstantOfShape in ONNX).
        img_ids = torch.zeros_like(box_labels[:, 0])
        out = self.model.forward_prompt_feats((feat_s4, feat_s8, feat_s16), img_ids, text_feats,
                                              text_mask, boxes, box_labels, box_mask)
        result = [out['logits'][-1:], out['boxes'][-1:], out['presence'][-1:]]
        if 'pred_masks' in out:
            result += [out['pred_masks'], out['semantic_seg']]
        return tuple(result)


@dataclass
class GraphSpec:
    """How one graph is exported: the wrapper, example inputs, names and dynamic axes."""
    name: str
    module: nn.Module
    example_inputs: Tuple[Tensor, ...]
    input_names: List[str]
    output_names: List[str]
    dynamic_axes: Dict[str, Dict[int, str]] = field(default_factory=dict)
    example_outputs: Optional[Tuple[Tensor, ...]] = None  # when already computed

    def outputs(self) -> Tuple[Tensor, ...]:
        """The module's outputs on the example inputs."""
        if self.example_outputs is None:
            with torch.no_grad():
                self.example_outputs = tuple(self.module(*self.example_inputs))
        return self.example_outputs


def _with_masks(model) -> bool:
    return getattr(model.bbox_head, 'mask_head', None) is not None


@torch.no_grad()
def graph_specs(model: nn.Module, input_hw: Sequence[int], context_length: int = 32,
                example_prompts: int = 2, example_boxes: int = 1,
                image: Optional[Tensor] = None) -> Dict[str, GraphSpec]:
    """The three :class:`GraphSpec` of a SAM 3 model for a static ``input_hw`` image size.

    The vision tower's example is ``image`` (``(1, 3, H, W)``, preprocessed) or a random one;
    the other examples are random. The vision tower runs once to give the decoder real shapes.
    """
    h, w = int(input_hw[0]), int(input_hw[1])
    patch = getattr(model.backbone, 'patch_size', 14)
    if h % patch or w % patch:
        raise ValueError(f'deploy input size {h}x{w} must be a multiple of the patch size {patch}')
    device = next(model.parameters()).device
    gen = torch.Generator().manual_seed(0)
    if image is None:
        image = torch.randn(1, 3, h, w, generator=gen)
    elif tuple(image.shape) != (1, 3, h, w):
        raise ValueError(f'example image of shape {tuple(image.shape)}; the deploy config is '
                         f'static at (1, 3, {h}, {w}): resize the input to {h}x{w} (the model '
                         'config\'s test pipeline) or use the deploy config of its size')
    image = image.to(device)
    # Wrappers in eval mode: the exporter restores each wrapper's mode afterwards, and a wrapper
    # left in training mode would switch the model back to training (DAC queries, dropout).
    model.eval()
    vision = VisionTowerGraph(model).eval()
    feats = vision(image)
    n, k = example_prompts, example_boxes
    token_ids = torch.randint(1, 1000, (n, context_length), generator=gen).to(device)
    text_feats = torch.randn(n, context_length, feats[-1].shape[1], generator=gen).to(device)
    text_mask = torch.zeros(n, context_length, dtype=torch.bool, device=device)
    text_mask[:, context_length // 2:] = True
    boxes = (torch.rand(n, k, 4, generator=gen) * 0.4 + 0.3).to(device)
    box_labels = torch.ones(n, k, dtype=torch.long, device=device)
    box_mask = torch.zeros(n, k, dtype=torch.bool, device=device)
    prompts = {0: 'num_prompts'}
    prompt_boxes = {0: 'num_prompts', 1: 'num_boxes'}
    dec_outputs = list(DECODER_OUTPUTS if _with_masks(model) else DECODER_OUTPUTS[:3])
    dec_axes = dict(text_feats=prompts, text_mask=prompts, boxes=prompt_boxes,
                    box_labels=prompt_boxes, box_mask=prompt_boxes)
    dec_axes.update({o: ({1: 'num_prompts'} if o in ('logits', 'pred_boxes', 'presence') else
                         prompts) for o in dec_outputs})
    return {
        'vision_tower':
        GraphSpec('vision_tower', vision, (image, ), ['image'], list(FEAT_NAMES),
                  example_outputs=tuple(feats)),
        'text_tower':
        GraphSpec('text_tower', TextTowerGraph(model).eval(), (token_ids, ), ['token_ids'],
                  ['text_feats', 'text_mask'],
                  dict(token_ids=prompts, text_feats=prompts, text_mask=prompts)),
        'prompt_decoder':
        GraphSpec('prompt_decoder', PromptDecoderGraph(model).eval(),
                  (*feats, text_feats, text_mask, boxes, box_labels, box_mask),
                  list(FEAT_NAMES) + ['text_feats', 'text_mask', 'boxes', 'box_labels',
                                      'box_mask'], dec_outputs, dec_axes),
    }
