"""The graphs SAM 3 is deployed as: vision tower, text tower, prompt decoder, and, for a model
with the interactive head (clicks, boxes, mask prompts), the interactive decoder.

Splitting the model keeps the prompt a run-time input (a new phrase runs the text graph, or comes
from a :class:`TextFeatureCache`, never a new export), runs the vision graph once for any number
of prompts on an image, and keeps each file under protobuf's 2 GB limit. The tokenizer, score
threshold, top-k and mask resizing stay in Python (``SAM3Head.predict_by_feat``).

* ``vision_tower``: ``image (1, 3, H, W)`` float, normalised -> ``feat_s4 (1, C, 4H/14, 4W/14)``,
  ``feat_s8 (1, C, 2H/14, 2W/14)``, ``feat_s16 (1, C, H/14, W/14)``; with the interactive head
  also the tracker neck's levels, from the same ViT pass, with the head's image-only work done
  (``SAM3InteractiveHead.image_feats``, once per image): ``tracker_embed (1, C, h, w)`` (the
  coarsest level + ``no_mem_embed``), ``tracker_feat_s4 (1, C/8, 4h, 4w)`` and
  ``tracker_feat_s8 (1, C/4, 2h, 2w)`` (the finer levels through ``conv_s0`` / ``conv_s1``),
  ``h = H/14``.
* ``text_tower``: ``token_ids (N, 32)`` int64 -> ``text_feats (N, 32, C)`` float,
  ``text_mask (N, 32)`` bool (True = pad).
* ``prompt_decoder``: the three ``feat_*``, ``text_feats``, ``text_mask``, ``boxes (N, K, 4)``
  cxcywh in [0, 1], ``box_labels (N, K)`` int64, ``box_mask (N, K)`` bool (True = padding) ->
  ``logits (1, N, Q, 1)``, ``pred_boxes (1, N, Q, 4)`` cxcywh in [0, 1], ``presence (1, N, 1)``,
  ``pred_masks (N, Q, 4H/14, 4W/14)``, ``semantic_seg (N, 1, 4H/14, 4W/14)``.

* ``interactive_decoder``: the three ``tracker_*``, ``point_coords (1, P, 2)`` float ``(x, y)``
  model-input pixels, ``point_labels (1, P)`` int64 (-1 padding, 0 / 1 clicks, 2 / 3 box
  corners), ``mask_input (1, 1, 4h, 4w)`` logits, ``has_mask_input (1,)`` float (1: use
  ``mask_input``, 0: ``no_mask_embed``, as SAM's ONNX exporters take it) ->
  ``low_res_logits (1, 4, 4h, 4w)``, ``iou_pred (1, 4)``, ``object_score_logits (1, 1)``: all four
  outputs (0 the single-mask token, 1..3 the multimask tokens). ``multimask_output`` and the
  stability-based single-mask choice are applied in Python (``SAMMaskDecoder.select``), as are
  hole filling and resizing (``postprocess_masks``). ``P`` is dynamic and counts the padding
  point the caller appends after the clicks (the PyTorch head appends it itself); a mask prompt
  alone is ``P = 0``, as Meta's predictor passes no sparse prompt then.

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
    'GRAPH_NAMES', 'INTERACTIVE_GRAPH', 'ALL_GRAPH_NAMES', 'GraphSpec', 'VisionTowerGraph',
    'TextTowerGraph', 'PromptDecoderGraph', 'InteractiveDecoderGraph', 'graph_specs',
    'graph_names_of'
]

# The concept graphs every SAM 3 export has, then the interactive decoder (models with
# ``interactive_head`` only); ALL_GRAPH_NAMES is also the order of the TensorRT profiles.
GRAPH_NAMES = ('vision_tower', 'text_tower', 'prompt_decoder')
INTERACTIVE_GRAPH = 'interactive_decoder'
ALL_GRAPH_NAMES = GRAPH_NAMES + (INTERACTIVE_GRAPH, )
FEAT_NAMES = ('feat_s4', 'feat_s8', 'feat_s16')
TRACKER_FEAT_NAMES = ('tracker_embed', 'tracker_feat_s4', 'tracker_feat_s8')
INTERACTIVE_INPUTS = TRACKER_FEAT_NAMES + ('point_coords', 'point_labels', 'mask_input',
                                           'has_mask_input')
INTERACTIVE_OUTPUTS = ('low_res_logits', 'iou_pred', 'object_score_logits')
# Graph output names; 'boxes' is already an input name (ONNX names are unique), so the decoder's
# boxes come out as 'pred_boxes' and OUTPUT_TO_HEAD_KEY maps them back to SAM3Head's key.
DECODER_OUTPUTS = ('logits', 'pred_boxes', 'presence', 'pred_masks', 'semantic_seg')
OUTPUT_TO_HEAD_KEY = {'pred_boxes': 'boxes'}


def _with_interactive(model) -> bool:
    return bool(getattr(model, 'with_interactive', False))


def graph_names_of(model: nn.Module) -> Tuple[str, ...]:
    """The graphs ``model`` is exported as (the interactive decoder when it has the head)."""
    return ALL_GRAPH_NAMES if _with_interactive(model) else GRAPH_NAMES


class VisionTowerGraph(nn.Module):
    """ViT + neck: ``image (1, 3, H, W)`` -> the three neck levels (``model.extract_feat``);
    with the interactive head also the tracker levels, ready for the interactive decoder
    (``extract_feats``: one ViT pass for both necks, then ``interactive_head.image_feats``)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        if not _with_interactive(self.model):
            return tuple(self.model.extract_feat(image))
        img_feats, tracker_levels = self.model.extract_feats(image)
        tracker = self.model.interactive_head.image_feats(tracker_levels)
        return (*img_feats, tracker['image_embed'], tracker['feat_s0'], tracker['feat_s1'])


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


class InteractiveDecoderGraph(nn.Module):
    """SAM's prompt encoder and mask decoder on one image's tracker features (see the module
    table): every output of the decoder, no ``multimask_output`` switch and no stability
    choice (both are Python after the graph), so nothing in it depends on the data.

    The grid's position encoding is a constant of the model (``get_dense_pe``), stored here as
    a buffer so that it becomes one initializer instead of a traced grid computation.
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        head = model.interactive_head
        self.prompt_encoder = head.prompt_encoder
        self.mask_decoder = head.mask_decoder
        with torch.no_grad():
            self.register_buffer('dense_pe', head.prompt_encoder.get_dense_pe().clone())

    def forward(self, tracker_embed: Tensor, tracker_feat_s4: Tensor, tracker_feat_s8: Tensor,
                point_coords: Tensor, point_labels: Tensor, mask_input: Tensor,
                has_mask_input: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        encoder = self.prompt_encoder
        # The padding point is already among the points (label -1), so no padding here.
        sparse = encoder.embed_points(point_coords, point_labels, pad=False)
        no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        use_mask = (has_mask_input > 0.5).reshape(-1, 1, 1, 1)
        dense = torch.where(use_mask, encoder.embed_masks(mask_input), no_mask)
        out = self.mask_decoder.predict_masks(tracker_embed, self.dense_pe,
                                              sparse.to(tracker_embed.dtype), dense,
                                              (tracker_feat_s4, tracker_feat_s8))
        return out['masks'], out['iou_pred'], out['object_score_logits']


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
                image: Optional[Tensor] = None, example_points: int = 3) -> Dict[str, GraphSpec]:
    """The :class:`GraphSpec` of a SAM 3 model for a static ``input_hw`` image size: the three
    concept graphs, and the interactive decoder when the model has the interactive head.

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
    vision_out = tuple(vision(image))
    feats, tracker = vision_out[:3], vision_out[3:]
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
    vision_outputs = list(FEAT_NAMES)
    if _with_interactive(model):
        vision_outputs += list(TRACKER_FEAT_NAMES)
    specs = {
        'vision_tower':
        GraphSpec('vision_tower', vision, (image, ), ['image'], vision_outputs,
                  example_outputs=vision_out),
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
    if _with_interactive(model):
        specs[INTERACTIVE_GRAPH] = _interactive_spec(model, tracker, example_points, gen)
    return specs


def _interactive_spec(model, tracker, num_points: int, gen) -> GraphSpec:
    """The interactive decoder's spec: ``num_points`` random clicks (the last one padding) and
    a random mask prompt switched on."""
    head = model.interactive_head
    device = tracker[0].device
    size = float(head.image_size)
    coords = (torch.rand(1, num_points, 2, generator=gen) * size).to(device)
    labels = torch.randint(0, 4, (1, num_points), generator=gen).to(device)
    labels[:, -1] = -1
    mask = torch.randn(1, 1, *head.low_res_size, generator=gen).to(device)
    has_mask = torch.ones(1, device=device)
    points = {1: 'num_points'}
    return GraphSpec(INTERACTIVE_GRAPH, InteractiveDecoderGraph(model).eval(),
                     (*tracker, coords, labels, mask, has_mask), list(INTERACTIVE_INPUTS),
                     list(INTERACTIVE_OUTPUTS), dict(point_coords=points, point_labels=points))
