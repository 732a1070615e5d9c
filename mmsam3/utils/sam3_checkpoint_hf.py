"""Key map between transformers' ``Sam3Model`` / ``Sam3LiteTextModel`` and mmsam3's ``SAM3``.

transformers (5.x) re-packages SAM 3's image model with its own module names: fused projections
are split (``qkv`` / ``in_proj_*`` -> ``q_proj``, ``k_proj``, ``v_proj``), MLP indices start at 1
(``layers.0`` -> ``layer1``), the ViT position table has no CLS row, the CLIP text projection is a
``Linear`` (the transpose of Meta's parameter) and the point-prompt projections, which the image
model never uses, are absent. Everything else is a rename. The map is written once, as templates
that are read in both directions (:func:`hf_to_mmsam3`, :func:`mmsam3_to_hf`).

Template placeholders: ``{i}`` an index kept as is, ``{i+1}`` an index that is one larger on the
transformers side, ``{p}`` the rest of the name (``weight``, ``bias``, ...), ``{qkv}`` one of
``q``/``k``/``v`` (a split of the fused mmsam3 tensor, rows in q, k, v order).
"""
import re
from collections import OrderedDict

import torch

__all__ = ['hf_to_mmsam3', 'mmsam3_to_hf', 'HF_DROPPED_PREFIXES', 'hf_config_from_mmsam3',
           'hf_tracker_to_mmsam3', 'mmsam3_to_hf_tracker', 'hf_tracker_config_from_mmsam3']

# Entries of a transformers checkpoint that are not SAM 3's image model: the video tracker's
# memory parts (Sam3VideoModel), kept aside unchanged (``video_tracker``).
HF_DROPPED_PREFIXES = (
    ('tracker_model.', 'video tracker: memory encoder / attention, object pointers (video only; '
     'kept unchanged in video_tracker)'),
)


def _attention(mm, hf, out='o_proj'):
    return [(f'{mm}.in_proj_{{p}}', f'{hf}.{{qkv}}_proj.{{p}}', 'split'),
            (f'{mm}.out_proj.{{p}}', f'{hf}.{out}.{{p}}', 'same')]


def _pre_norm_layer(mm, hf):
    """A pre-norm (self-attn, cross-attn to image, FFN) layer: fusion and geometry encoders."""
    return (_attention(f'{mm}.self_attn', f'{hf}.self_attn') +
            _attention(f'{mm}.cross_attn_image', f'{hf}.cross_attn') + [
                (f'{mm}.linear1.{{p}}', f'{hf}.mlp.fc1.{{p}}', 'same'),
                (f'{mm}.linear2.{{p}}', f'{hf}.mlp.fc2.{{p}}', 'same'),
                (f'{mm}.norm1.{{p}}', f'{hf}.layer_norm1.{{p}}', 'same'),
                (f'{mm}.norm2.{{p}}', f'{hf}.layer_norm2.{{p}}', 'same'),
                (f'{mm}.norm3.{{p}}', f'{hf}.layer_norm3.{{p}}', 'same'),
            ])


def _mlp(mm, hf):
    return [(f'{mm}.layers.{{i}}.{{p}}', f'{hf}.layer{{i+1}}.{{p}}', 'same')]


_VIT = [
    ('backbone.pos_embed', 'vision_encoder.backbone.embeddings.position_embeddings', 'pos_embed'),
    ('backbone.patch_embed.proj.{p}',
     'vision_encoder.backbone.embeddings.patch_embeddings.projection.{p}', 'same'),
    ('backbone.ln_pre.{p}', 'vision_encoder.backbone.layer_norm.{p}', 'same'),
    ('backbone.blocks.{i}.norm1.{p}', 'vision_encoder.backbone.layers.{i}.layer_norm1.{p}', 'same'),
    ('backbone.blocks.{i}.norm2.{p}', 'vision_encoder.backbone.layers.{i}.layer_norm2.{p}', 'same'),
    ('backbone.blocks.{i}.attn.qkv.{p}',
     'vision_encoder.backbone.layers.{i}.attention.{qkv}_proj.{p}', 'split'),
    ('backbone.blocks.{i}.attn.proj.{p}',
     'vision_encoder.backbone.layers.{i}.attention.o_proj.{p}', 'same'),
    ('backbone.blocks.{i}.mlp.{p}', 'vision_encoder.backbone.layers.{i}.mlp.{p}', 'same'),
    ('neck.convs.{i}.dconv_2x2_0.{p}', 'vision_encoder.neck.fpn_layers.{i}.scale_layers.0.{p}',
     'same'),
    ('neck.convs.{i}.dconv_2x2_1.{p}', 'vision_encoder.neck.fpn_layers.{i}.scale_layers.2.{p}',
     'same'),
    ('neck.convs.{i}.dconv_2x2.{p}', 'vision_encoder.neck.fpn_layers.{i}.scale_layers.0.{p}',
     'same'),
    ('neck.convs.{i}.conv_1x1.{p}', 'vision_encoder.neck.fpn_layers.{i}.proj1.{p}', 'same'),
    ('neck.convs.{i}.conv_3x3.{p}', 'vision_encoder.neck.fpn_layers.{i}.proj2.{p}', 'same'),
]

_CLIP_TEXT = [
    ('text_encoder.encoder.token_embedding.{p}',
     'text_encoder.text_model.embeddings.token_embedding.{p}', 'same'),
    ('text_encoder.encoder.positional_embedding',
     'text_encoder.text_model.embeddings.position_embedding.weight', 'same'),
    ('text_encoder.encoder.text_projection', 'text_encoder.text_projection.weight', 'transpose'),
    *_attention('text_encoder.encoder.transformer.resblocks.{i}.attn',
                'text_encoder.text_model.encoder.layers.{i}.self_attn', out='out_proj'),
    ('text_encoder.encoder.transformer.resblocks.{i}.ln_1.{p}',
     'text_encoder.text_model.encoder.layers.{i}.layer_norm1.{p}', 'same'),
    ('text_encoder.encoder.transformer.resblocks.{i}.ln_2.{p}',
     'text_encoder.text_model.encoder.layers.{i}.layer_norm2.{p}', 'same'),
    ('text_encoder.encoder.transformer.resblocks.{i}.mlp.c_fc.{p}',
     'text_encoder.text_model.encoder.layers.{i}.mlp.fc1.{p}', 'same'),
    ('text_encoder.encoder.transformer.resblocks.{i}.mlp.c_proj.{p}',
     'text_encoder.text_model.encoder.layers.{i}.mlp.fc2.{p}', 'same'),
    ('text_encoder.encoder.ln_final.{p}', 'text_encoder.text_model.final_layer_norm.{p}', 'same'),
    ('text_encoder.resizer.{p}', 'text_projection.{p}', 'same'),
]

# SAM3LiteTextEncoder keeps transformers' names under `encoder.`.
_LITE_TEXT = [
    ('text_encoder.encoder.{p}', 'text_encoder.{p}', 'same'),
    ('text_encoder.resizer.{p}', 'text_projection.{p}', 'same'),
]

_DETECTOR = [
    # geometry encoder
    *[(f'geometry_encoder.{n}.{{p}}', f'geometry_encoder.{n}.{{p}}', 'same')
      for n in ('label_embed', 'cls_embed', 'boxes_direct_project', 'boxes_pool_project',
                'boxes_pos_enc_project', 'final_proj')],
    ('geometry_encoder.norm.{p}', 'geometry_encoder.prompt_layer_norm.{p}', 'same'),
    ('geometry_encoder.img_pre_norm.{p}', 'geometry_encoder.vision_layer_norm.{p}', 'same'),
    ('geometry_encoder.encode_norm.{p}', 'geometry_encoder.output_layer_norm.{p}', 'same'),
    *_pre_norm_layer('geometry_encoder.encode.{i}', 'geometry_encoder.layers.{i}'),
    # fusion encoder
    *_pre_norm_layer('encoder.layers.{i}', 'detr_encoder.layers.{i}'),
    # decoder (post-norm: self-attn -> norm2, text -> catext_norm, image -> norm1, FFN -> norm3)
    *_attention('decoder.layers.{i}.self_attn', 'detr_decoder.layers.{i}.self_attn'),
    *_attention('decoder.layers.{i}.ca_text', 'detr_decoder.layers.{i}.text_cross_attn'),
    *_attention('decoder.layers.{i}.cross_attn', 'detr_decoder.layers.{i}.vision_cross_attn'),
    ('decoder.layers.{i}.norm2.{p}', 'detr_decoder.layers.{i}.self_attn_layer_norm.{p}', 'same'),
    ('decoder.layers.{i}.catext_norm.{p}',
     'detr_decoder.layers.{i}.text_cross_attn_layer_norm.{p}', 'same'),
    ('decoder.layers.{i}.norm1.{p}', 'detr_decoder.layers.{i}.vision_cross_attn_layer_norm.{p}',
     'same'),
    ('decoder.layers.{i}.linear1.{p}', 'detr_decoder.layers.{i}.mlp.fc1.{p}', 'same'),
    ('decoder.layers.{i}.linear2.{p}', 'detr_decoder.layers.{i}.mlp.fc2.{p}', 'same'),
    ('decoder.layers.{i}.norm3.{p}', 'detr_decoder.layers.{i}.mlp_layer_norm.{p}', 'same'),
    ('decoder.norm.{p}', 'detr_decoder.output_layer_norm.{p}', 'same'),
    *[(f'decoder.{n}.{{p}}', f'detr_decoder.{n}.{{p}}', 'same')
      for n in ('query_embed', 'reference_points', 'presence_token')],
    *_mlp('decoder.bbox_embed', 'detr_decoder.box_head'),
    *_mlp('decoder.boxRPB_embed_x', 'detr_decoder.box_rpb_embed_x'),
    *_mlp('decoder.boxRPB_embed_y', 'detr_decoder.box_rpb_embed_y'),
    *_mlp('decoder.ref_point_head', 'detr_decoder.ref_point_head'),
    *_mlp('decoder.presence_token_head', 'detr_decoder.presence_head'),
    ('decoder.presence_token_out_norm.{p}', 'detr_decoder.presence_layer_norm.{p}', 'same'),
    # scoring head
    *_mlp('bbox_head.scoring_head.prompt_mlp', 'dot_product_scoring.text_mlp'),
    ('bbox_head.scoring_head.prompt_mlp.out_norm.{p}', 'dot_product_scoring.text_mlp_out_norm.{p}',
     'same'),
    ('bbox_head.scoring_head.prompt_proj.{p}', 'dot_product_scoring.text_proj.{p}', 'same'),
    ('bbox_head.scoring_head.hs_proj.{p}', 'dot_product_scoring.query_proj.{p}', 'same'),
    # mask head
    ('bbox_head.mask_head.pixel_decoder.{p}', 'mask_decoder.pixel_decoder.{p}', 'same'),
    ('bbox_head.mask_head.mask_predictor.mask_embed.{p}', 'mask_decoder.mask_embedder.{p}',
     'same'),
    *_attention('bbox_head.mask_head.cross_attend_prompt', 'mask_decoder.prompt_cross_attn'),
    ('bbox_head.mask_head.cross_attn_norm.{p}', 'mask_decoder.prompt_cross_attn_norm.{p}', 'same'),
    ('bbox_head.mask_head.semantic_seg_head.{p}', 'mask_decoder.semantic_projection.{p}', 'same'),
    ('bbox_head.mask_head.instance_seg_head.{p}', 'mask_decoder.instance_projection.{p}', 'same'),
]

# mmsam3 weights the transformers layout has no place for; the image model never uses them.
MMSAM3_ONLY = (
    ('geometry_encoder.points_', 'point-prompt projections (unused by the image model)'),
)



def _mlp3(mm, hf):
    """A 3-layer SAM MLP: ``layers.0/1/2`` <-> ``proj_in`` / ``layers.0`` / ``proj_out``."""
    return [(f'{mm}.layers.0.{{p}}', f'{hf}.proj_in.{{p}}', 'same'),
            (f'{mm}.layers.1.{{p}}', f'{hf}.layers.0.{{p}}', 'same'),
            (f'{mm}.layers.2.{{p}}', f'{hf}.proj_out.{{p}}', 'same')]


def _sam_attention(mm, hf):
    return [(f'{mm}.{x}_proj.{{p}}', f'{hf}.{x}_proj.{{p}}', 'same') for x in 'qkv'] + \
        [(f'{mm}.out_proj.{{p}}', f'{hf}.o_proj.{{p}}', 'same')]


# The interactive head (mmsam3 ``interactive_head.*``) <-> transformers' Sam3TrackerModel
# (``prompt_encoder``, ``mask_decoder``, ``no_memory_embedding``; inside Sam3VideoModel under
# ``tracker_model.``). The point embeddings (4 x (1, C)) are stacked into ``point_embed.weight``
# and the Fourier table is stored twice (``shared_image_embedding``): handled in the functions.
_PE, _MD = 'interactive_head.prompt_encoder', 'interactive_head.mask_decoder'
_TRACKER_HEAD = [
    ('interactive_head.no_mem_embed', 'no_memory_embedding', 'same'),
    (f'{_PE}.pe_layer.positional_encoding_gaussian_matrix',
     'prompt_encoder.shared_embedding.positional_embedding', 'same'),
    (f'{_PE}.not_a_point_embed.{{p}}', 'prompt_encoder.not_a_point_embed.{p}', 'same'),
    (f'{_PE}.no_mask_embed.{{p}}', 'prompt_encoder.no_mask_embed.{p}', 'same'),
    *[(f'{_PE}.mask_downscaling.{n}.{{p}}', f'prompt_encoder.mask_embed.{h}.{{p}}', 'same')
      for n, h in ((0, 'conv1'), (1, 'layer_norm1'), (3, 'conv2'), (4, 'layer_norm2'),
                   (6, 'conv3'))],
    *[(f'{_MD}.{n}.{{p}}', f'mask_decoder.{n}.{{p}}', 'same')
      for n in ('iou_token', 'mask_tokens', 'obj_score_token', 'conv_s0', 'conv_s1')],
    *[(f'{_MD}.output_upscaling.{n}.{{p}}', f'mask_decoder.{h}.{{p}}', 'same')
      for n, h in ((0, 'upscale_conv1'), (1, 'upscale_layer_norm'), (3, 'upscale_conv2'))],
    *_mlp3(f'{_MD}.output_hypernetworks_mlps.{{i}}', 'mask_decoder.output_hypernetworks_mlps.{i}'),
    *_mlp3(f'{_MD}.iou_prediction_head', 'mask_decoder.iou_prediction_head'),
    *_mlp3(f'{_MD}.pred_obj_score_head', 'mask_decoder.pred_obj_score_head'),
    *[r for a in ('self_attn', 'cross_attn_token_to_image', 'cross_attn_image_to_token')
      for r in _sam_attention(f'{_MD}.transformer.layers.{{i}}.{a}',
                              f'mask_decoder.transformer.layers.{{i}}.{a}')],
    *[(f'{_MD}.transformer.layers.{{i}}.norm{n}.{{p}}',
       f'mask_decoder.transformer.layers.{{i}}.layer_norm{n}.{{p}}', 'same') for n in range(1, 5)],
    (f'{_MD}.transformer.layers.{{i}}.mlp.lin1.{{p}}',
     'mask_decoder.transformer.layers.{i}.mlp.proj_in.{p}', 'same'),
    (f'{_MD}.transformer.layers.{{i}}.mlp.lin2.{{p}}',
     'mask_decoder.transformer.layers.{i}.mlp.proj_out.{p}', 'same'),
    *_sam_attention(f'{_MD}.transformer.final_attn_token_to_image',
                    'mask_decoder.transformer.final_attn_token_to_image'),
    (f'{_MD}.transformer.norm_final_attn.{{p}}',
     'mask_decoder.transformer.layer_norm_final_attn.{p}', 'same'),
]


def _tracker_neck(hf_prefix):
    """The tracker neck (``tracker_neck.convs``) under ``hf_prefix`` (``fpn_layers``)."""
    return [('tracker_' + mm, hf_prefix + hf[len('vision_encoder.neck.'):], kind)
            for mm, hf, kind in _VIT if mm.startswith('neck.convs.')]


_FIELD = {'i': r'(?P<i>\d+)', 'i+1': r'(?P<i>\d+)', 'p': r'(?P<p>.+)', 'qkv': r'(?P<qkv>[qkv])'}


def _compile(template):
    parts = re.split(r'\{(i\+1|i|p|qkv)\}', template)
    regex = ''.join(_FIELD[x] if k % 2 else re.escape(x) for k, x in enumerate(parts))
    return re.compile(regex + '$')


def _fill(template, i=None, p=None, qkv=None):
    out = template.replace('{i+1}', str(None if i is None else int(i) + 1))
    out = out.replace('{i}', str(i)).replace('{qkv}', str(qkv))
    return out.replace('{p}', str(p))


class _Rules:

    def __init__(self, rules):
        self.rules = [(mm, hf, kind, _compile(mm), _compile(hf)) for mm, hf, kind in rules]

    def from_mm(self, name):
        for mm, hf, kind, mm_re, _ in self.rules:
            m = mm_re.match(name)
            if m:
                g = m.groupdict()
                return hf, kind, g.get('i'), g.get('p')
        return None

    def from_hf(self, name):
        for mm, hf, kind, _, hf_re in self.rules:
            m = hf_re.match(name)
            if m:
                g = m.groupdict()
                i = g.get('i')
                if i is not None and '{i+1}' in hf:
                    i = str(int(i) - 1)
                return _fill(mm, i, g.get('p')), kind, g.get('qkv')
        return None


_RULES = {False: _Rules(_VIT + _CLIP_TEXT + _DETECTOR), True: _Rules(_VIT + _LITE_TEXT + _DETECTOR)}
# Sam3VideoModel's interactive parts: `tracker_neck.*` and `tracker_model.*`.
_VIDEO_TRACKER_RULES = _Rules(_tracker_neck('tracker_neck.') +
                              [(mm, 'tracker_model.' + hf, k) for mm, hf, k in _TRACKER_HEAD])
# Sam3TrackerModel: the ViT, its (tracker) neck and the head.
_TRACKER_MODEL_RULES = _Rules([r for r in _VIT if not r[0].startswith('neck.')] +
                              _tracker_neck('vision_encoder.neck.') + _TRACKER_HEAD)
_POINT_EMBED = 'prompt_encoder.point_embed.weight'
_SHARED_PE = 'shared_image_embedding.positional_embedding'
_PE_TABLE = 'interactive_head.prompt_encoder.pe_layer.positional_encoding_gaussian_matrix'


def _place_hf_tensor(hit, value, out, splits, filled) -> None:
    """Put one transformers tensor under its mmsam3 name (``hit`` from a rule table's
    ``from_hf``): q / k / v parts wait in ``splits``, linear weights stored transposed are
    transposed back, the ViT position table gets its (unused) CLS row."""
    mm, kind, qkv = hit
    if kind == 'split':
        splits.setdefault(mm, {})[qkv] = value
    elif kind == 'transpose':
        out[mm] = value.t().contiguous()
    elif kind == 'pos_embed':
        out[mm] = torch.cat([torch.zeros_like(value[:, :1]), value], dim=1)
        filled['CLS row of the ViT position table (unused)'] = 1
    else:
        out[mm] = value


def _merge_hf_tensors(out, splits, unknown) -> None:
    """After :func:`_place_hf_tensor`: fuse q / k / v into one projection (a missing part is
    reported in ``unknown``) and rename a x2 neck level's single transposed conv."""
    for mm, parts in splits.items():
        if set(parts) != {'q', 'k', 'v'}:
            unknown.extend(f'{mm} ({x} part missing)' for x in 'qkv' if x not in parts)
            continue
        out[mm] = torch.cat([parts['q'], parts['k'], parts['v']], dim=0)
    # A x2 level holds one transposed conv (`dconv_2x2`), stored as scale_layers.0 like the first
    # of the x4 level's two (`dconv_2x2_0`, `dconv_2x2_1`).
    for key in [k for k in out if '.dconv_2x2_0.' in k]:
        level = key.split('.dconv_2x2_0.')[0]
        if not any(k.startswith(level + '.dconv_2x2_1.') for k in out):
            out[key.replace('.dconv_2x2_0.', '.dconv_2x2.')] = out.pop(key)


def _place_mm_tensor(hit, value, out, dropped) -> None:
    """The inverse of :func:`_place_hf_tensor` for one mmsam3 tensor (``hit`` from a rule
    table's ``from_mm``): a fused q / k / v projection is split, transposed weights are
    transposed, the ViT position table loses its (unused) CLS row."""
    hf, kind, i, p = hit
    if kind == 'split':
        for qkv, part in zip('qkv', value.chunk(3, dim=0)):
            out[_fill(hf, i, p, qkv)] = part.contiguous()
    elif kind == 'transpose':
        out[_fill(hf, i, p)] = value.t().contiguous()
    elif kind == 'pos_embed':
        out[_fill(hf, i, p)] = value[:, 1:].contiguous()
        dropped['CLS row of the ViT position table (unused)'] = 1
    else:
        out[_fill(hf, i, p)] = value


def hf_to_mmsam3(state, lite_text=False, embed_dims=None):
    """transformers ``Sam3Model`` (``lite_text``: ``Sam3LiteTextModel``) state dict -> mmsam3.

    Args:
        state (dict): the safetensors content; a ``detector_model.`` prefix (video checkpoints)
            is removed, the tracker entries are dropped.
        lite_text (bool): the text encoder is LiteText's (:class:`SAM3LiteTextEncoder`).
        embed_dims (int | None): width of the point projections that are filled in (default: read
            from ``geometry_encoder.final_proj.weight``).

    Returns:
        tuple[OrderedDict, dict]: mmsam3 state dict and report ``{converted, dropped, filled,
        unknown}``. Filled entries (zeros) are weights mmsam3 keeps but the image model never
        uses: the ViT position table's CLS row and the point-prompt projections.
    """
    rules = _RULES[bool(lite_text)]
    out, dropped, filled, unknown = OrderedDict(), {}, {}, []
    splits = {}
    video, interactive = OrderedDict(), {}
    for key, value in state.items():
        name = key[len('detector_model.'):] if key.startswith('detector_model.') else key
        if name.startswith(('tracker_neck.', 'tracker_model.')):
            what = _tracker_entry(name, 'tracker_model.', value, out, _VIDEO_TRACKER_RULES)
            if what is not None:
                interactive[what] = interactive.get(what, 0) + 1
                continue
        why = next((w for pre, w in HF_DROPPED_PREFIXES if name.startswith(pre)), None)
        if why is not None:
            dropped[why] = dropped.get(why, 0) + 1
            video[key] = value
            continue
        hit = rules.from_hf(name)
        if hit is None:
            unknown.append(key)
            continue
        _place_hf_tensor(hit, value, out, splits, filled)
    _merge_hf_tensors(out, splits, unknown)
    if out and not unknown and 'geometry_encoder.final_proj.weight' in out:
        width = embed_dims or out['geometry_encoder.final_proj.weight'].shape[0]
        ref = out['geometry_encoder.final_proj.weight']
        for name, shape in (('points_direct_project', (width, 2)),
                            ('points_pool_project', (width, width)),
                            ('points_pos_enc_project', (width, width))):
            out[f'geometry_encoder.{name}.weight'] = ref.new_zeros(shape)
            out[f'geometry_encoder.{name}.bias'] = ref.new_zeros(width)
        filled[MMSAM3_ONLY[0][1]] = 6
    _finish_point_embed(out, unknown)
    points = filled.get(MMSAM3_ONLY[0][1], 0)
    report = dict(converted=len(out) - points, dropped=dropped, filled=filled, unknown=unknown,
                  interactive=interactive, video_tracker=video)
    return _ordered(out), report


_TRACKER_WHAT = 'interactive head and tracker neck (transformers tracker -> interactive_head, ' \
    'tracker_neck)'


def _tracker_entry(name, prefix, value, out, rules):
    """Convert one transformers tracker entry into ``out``; returns what it was, or None."""
    rel = name[len(prefix):] if name.startswith(prefix) else name
    if rel == _POINT_EMBED:
        for k in range(value.shape[0]):
            out[f'interactive_head.prompt_encoder.point_embeddings.{k}.weight'] = \
                value[k:k + 1].clone()
        return _TRACKER_WHAT
    if rel == _SHARED_PE:
        out.setdefault('_shared_pe', value)
        return _TRACKER_WHAT
    hit = rules.from_hf(name)
    if hit is None:
        return None
    out[hit[0]] = value
    return _TRACKER_WHAT


def _finish_point_embed(out, unknown):
    """The second copy of the Fourier table must equal the first (then it is dropped)."""
    shared = out.pop('_shared_pe', None)
    if shared is not None and _PE_TABLE in out and not torch.equal(shared, out[_PE_TABLE]):
        unknown.append(f'{_SHARED_PE} (differs from the prompt encoder\'s table)')
    elif shared is not None and _PE_TABLE not in out:
        out[_PE_TABLE] = shared


def _tracker_model_name(key):
    """A Sam3TrackerModel key as the module names it. transformers 5 writes the file in the
    Hub's (Sam3VideoModel-like) layout: ``tracker_model.`` before everything,
    ``detector_model.vision_encoder.backbone.`` for the ViT and ``tracker_neck.`` for the neck
    (its ``conversion_mapping`` for ``sam3_tracker``); both spellings are read."""
    if key.startswith('tracker_model.'):
        key = key[len('tracker_model.'):]
    if key.startswith('detector_model.vision_encoder.backbone.'):
        key = key[len('detector_model.'):]
    if key.startswith('tracker_neck.'):
        key = 'vision_encoder.neck.' + key[len('tracker_neck.'):]
    return key


def _tracker_file_name(key):
    """The inverse of :func:`_tracker_model_name`: the name transformers writes on disk."""
    if key.startswith('vision_encoder.backbone.'):
        key = 'detector_model.' + key
    elif key.startswith('vision_encoder.neck.'):
        key = 'tracker_neck.' + key[len('vision_encoder.neck.'):]
    return 'tracker_model.' + key


def hf_tracker_to_mmsam3(state):
    """transformers ``Sam3TrackerModel`` (clicks on images) -> mmsam3: the ViT (``backbone``),
    its neck (the tracker neck: ``tracker_neck``) and ``interactive_head``. The concept
    detector's parts are absent (a concept + interactive config reports them missing).

    Returns:
        tuple[OrderedDict, dict]: state dict and report ``{converted, dropped, filled,
        interactive, unknown}``.
    """
    out, filled, unknown, splits, interactive = OrderedDict(), {}, [], {}, {}
    state = OrderedDict((_tracker_model_name(k), v) for k, v in state.items())
    for key, value in state.items():
        if not key.startswith('vision_encoder.backbone.'):
            what = _tracker_entry(key, '', value, out, _TRACKER_MODEL_RULES)
            if what is None:
                unknown.append(key)
            else:
                interactive[what] = interactive.get(what, 0) + 1
            continue
        hit = _TRACKER_MODEL_RULES.from_hf(key)
        if hit is None:
            unknown.append(key)
            continue
        _place_hf_tensor(hit, value, out, splits, filled)
    _merge_hf_tensors(out, splits, unknown)
    _finish_point_embed(out, unknown)
    report = dict(converted=len(out), dropped={}, filled=filled, interactive=interactive,
                  unknown=unknown)
    return _ordered(out), report


def _tracker_to_hf(state, rules, prefix, out, dropped, unknown, handled):
    """mmsam3 interactive weights -> transformers names (``prefix`` before the head's)."""
    points = {}
    for key, value in state.items():
        if not key.startswith(('interactive_head.', 'tracker_neck.')):
            continue
        handled.add(key)
        if key.startswith('interactive_head.prompt_encoder.point_embeddings.'):
            points[int(key.split('.')[3])] = value
            continue
        hit = rules.from_mm(key)
        if hit is None:
            unknown.append(key)
            continue
        hf, kind, i, p = hit
        out[_fill(hf, i, p)] = value
        if key == _PE_TABLE:
            out[prefix + _SHARED_PE] = value.clone()
    if points:
        out[prefix + _POINT_EMBED] = torch.cat([points[k] for k in sorted(points)], dim=0)


def mmsam3_to_hf_tracker(state):
    """mmsam3 (with the interactive head) -> transformers ``Sam3TrackerModel``: the ViT, the
    tracker neck and the head, named as ``save_pretrained`` writes them (see
    :func:`_tracker_model_name`); the concept detector's parts have no place there (dropped)."""
    out, dropped, unknown, handled = OrderedDict(), {}, [], set()
    _tracker_to_hf(state, _TRACKER_MODEL_RULES, '', out, dropped, unknown, handled)
    for key, value in state.items():
        if key in handled:
            continue
        if not key.startswith('backbone.'):
            why = 'concept detector (no place in Sam3TrackerModel)'
            dropped[why] = dropped.get(why, 0) + 1
            continue
        hit = _TRACKER_MODEL_RULES.from_mm(key)
        if hit is None:
            unknown.append(key)
            continue
        _place_mm_tensor(hit, value, out, dropped)
    out = OrderedDict((_tracker_file_name(k), v) for k, v in out.items())
    return out, dict(converted=len(out), dropped=dropped, unknown=unknown)


def mmsam3_to_hf(state, lite_text=False):
    """mmsam3 ``SAM3`` state dict -> transformers ``Sam3Model`` (or ``Sam3LiteTextModel``).

    Returns:
        tuple[OrderedDict, dict]: the transformers state dict and report ``{converted, dropped,
        unknown}``; dropped = entries with no place in the transformers layout (point-prompt
        projections, the ViT position table's CLS row).
    """
    rules = _RULES[bool(lite_text)]
    out, dropped, unknown = OrderedDict(), {}, []
    for key, value in state.items():
        if key.startswith(('interactive_head.', 'tracker_neck.')):
            why = ('interactive head and tracker neck (no place in Sam3Model; '
                   '--dst-format hf-tracker writes a Sam3TrackerModel)')
            dropped[why] = dropped.get(why, 0) + 1
            continue
        why = next((w for pre, w in MMSAM3_ONLY if key.startswith(pre)), None)
        if why is not None:
            dropped[why] = dropped.get(why, 0) + 1
            continue
        hit = rules.from_mm(key)
        if hit is None:
            unknown.append(key)
            continue
        _place_mm_tensor(hit, value, out, dropped)
    return out, dict(converted=len(out), dropped=dropped, unknown=unknown)


def _ordered(state):
    return OrderedDict(sorted(state.items()))


def hf_config_from_mmsam3(model_cfg):
    """A transformers ``config.json`` dict for the mmsam3 ``model`` config ``model_cfg``.

    Sizes come from the mmsam3 config; the numerics that transformers' defaults set differently
    from SAM 3 (ViT LayerNorm epsilon 1e-6, CLIP's quick GELU) are written as SAM 3 has them.
    """
    bb, neck, te = model_cfg['backbone'], model_cfg['neck'], model_cfg['text_encoder']
    vit_dims = bb.get('embed_dims', bb.get('embed_dim'))
    d = neck['out_channels']
    geo, enc, dec = model_cfg['geometry_encoder'], model_cfg['encoder'], model_cfg['decoder']
    grid = bb['img_size'] // bb.get('patch_size', 14)
    sizes = [[int(grid * s), int(grid * s)] for s in neck['scale_factors']]
    sizes = sizes[:len(sizes) - neck.get('num_dropped_levels', 1)]
    vision = dict(
        model_type='sam3_vision_model', fpn_hidden_size=d, backbone_feature_sizes=sizes,
        scale_factors=list(neck['scale_factors']),
        backbone_config=dict(
            model_type='sam3_vit_model', hidden_size=bb['embed_dims'],
            intermediate_size=int(bb['embed_dims'] * bb.get('mlp_ratio', 4.625)),
            num_hidden_layers=bb['depth'], num_attention_heads=bb['num_heads'],
            image_size=bb['img_size'], patch_size=bb.get('patch_size', 14),
            window_size=bb['window_size'], global_attn_indexes=list(bb['global_att_blocks']),
            pretrain_image_size=bb.get('pretrain_img_size', 336),
            layer_norm_eps=bb.get('norm_eps', 1e-5)))
    if te['type'] == 'SAM3LiteTextEncoder':
        text = dict(model_type='sam3_lite_text_text_model', hidden_size=te['width'],
                    intermediate_size=te['hidden_dims'], projection_dim=te['projection_dims'],
                    num_hidden_layers=te['layers'], num_attention_heads=te['heads'],
                    max_position_embeddings=te['max_position_embeddings'],
                    use_repmixer_blocks=te.get('use_repmixer_blocks', True),
                    repmixer_kernel_size=te.get('repmixer_kernel_size', 11))
        model_type, arch = 'sam3_lite_text', 'Sam3LiteTextModel'
    else:
        width = te['width']
        text = dict(model_type='clip_text_model', vocab_size=49408, hidden_size=width,
                    intermediate_size=int(width * te.get('mlp_ratio', 4.0)),
                    projection_dim=te.get('output_dim', 512), num_hidden_layers=te['layers'],
                    num_attention_heads=te['heads'],
                    max_position_embeddings=te.get('context_length', 32), hidden_act='gelu',
                    layer_norm_eps=te.get('norm_eps', 1e-5))
        model_type, arch = 'sam3', 'Sam3Model'

    def block(c, **extra):
        return dict(hidden_size=d, num_layers=c['num_layers'],
                    num_attention_heads=c.get('num_heads', 8),
                    intermediate_size=c.get('dim_feedforward', 2048), **extra)

    heads = model_cfg['bbox_head']
    return dict(
        architectures=[arch], model_type=model_type, vision_config=vision, text_config=text,
        geometry_encoder_config=block(geo),
        detr_encoder_config=block(enc),
        detr_decoder_config=block(dec, num_queries=dec.get('num_queries', 200)),
        mask_decoder_config=dict(
            hidden_size=d, num_upsampling_stages=heads['mask_head'].get('num_upsampling_stages',
                                                                         3),
            num_attention_heads=heads['mask_head'].get('num_heads', 8)))


def hf_tracker_config_from_mmsam3(model_cfg):
    """A transformers ``Sam3TrackerModel`` ``config.json`` dict for an mmsam3 interactive
    ``model`` config (the ViT, the tracker neck's sizes and the head's)."""
    vision = hf_config_from_mmsam3(model_cfg)['vision_config']
    head = model_cfg['interactive_head']
    dec = head.get('mask_decoder', {})
    tr = dec.get('transformer', {})
    d = head.get('embed_dims', 256)
    return dict(
        architectures=['Sam3TrackerModel'], model_type='sam3_tracker', vision_config=vision,
        prompt_encoder_config=dict(
            hidden_size=d, image_size=head.get('image_size', 1008),
            patch_size=head.get('backbone_stride', 14),
            mask_input_channels=head.get('prompt_encoder', {}).get('mask_in_chans', 16)),
        mask_decoder_config=dict(
            hidden_size=d, mlp_dim=tr.get('mlp_dims', 2048),
            num_hidden_layers=tr.get('depth', 2), num_attention_heads=tr.get('num_heads', 8),
            num_multimask_outputs=dec.get('num_multimask_outputs', 3),
            iou_head_depth=dec.get('iou_head_depth', 3),
            iou_head_hidden_dim=dec.get('iou_head_hidden_dim', 256),
            dynamic_multimask_via_stability=dec.get('dynamic_multimask_via_stability', True),
            dynamic_multimask_stability_delta=dec.get('dynamic_multimask_stability_delta', 0.05),
            dynamic_multimask_stability_thresh=dec.get('dynamic_multimask_stability_thresh',
                                                       0.98)))
