"""Harness around Meta's official ``sam3`` package, for parity checks only.

The product (everything in ``mmsam3`` outside this sub-package) never imports ``sam3``; tests and
the ``tools/analysis_tools`` parity and benchmark scripts do, through this module. ``sam3`` is
imported inside the functions, so importing this module (or ``mmsam3``) never needs it.

The official code assumes CUDA in three places (two ``device="cuda"`` at construction time and
one ``pin_memory()`` while encoding box prompts). :func:`patch_official_for_cpu` redirects those
to the CPU in memory; site-packages is never edited.
"""
import functools
import os
import os.path as osp
import types

import torch

# The repository checkout holding this package; ``../shared`` next to it holds shared data.
_REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BPE_PATH = os.environ.get(
    'MMSAM3_BPE_PATH',
    osp.join(osp.dirname(_REPO), 'shared', 'data', 'bpe_simple_vocab_16e6.txt.gz'))

_PATCHED = False


def official_available():
    """Return ``(ok, reason)``: whether the official package can be imported here."""
    try:
        import sam3  # noqa: F401
    except Exception as exc:  # pragma: no cover - depends on the environment
        return False, f'official sam3 package not importable: {exc!r}'
    return True, ''


class _CpuDefaultTorch(types.ModuleType):
    """Stand-in for ``torch`` inside one official module: ``device='cuda'`` becomes the CPU."""

    def __init__(self):
        super().__init__('torch')

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def zeros(*args, **kwargs):
        if str(kwargs.get('device', '')).startswith('cuda') and not torch.cuda.is_available():
            kwargs['device'] = 'cpu'
        return torch.zeros(*args, **kwargs)


def patch_official_for_cpu():
    """Make the official image model build and run on a machine without CUDA (idempotent)."""
    global _PATCHED
    if _PATCHED or torch.cuda.is_available():
        return
    from sam3.model import decoder, position_encoding

    # 1. PositionEmbeddingSine precomputes its cache with torch.zeros(..., device="cuda").
    position_encoding.torch = _CpuDefaultTorch()

    # 2. TransformerDecoder builds its boxRPB coordinate cache on device="cuda".
    original_get_coords = decoder.TransformerDecoder._get_coords

    @functools.wraps(original_get_coords)
    def _get_coords(H, W, device):
        if str(device).startswith('cuda'):
            device = 'cpu'
        return original_get_coords(H, W, device)

    decoder.TransformerDecoder._get_coords = staticmethod(_get_coords)

    # 3. SequenceGeometryEncoder pins a small CPU tensor, which needs a CUDA driver.
    torch.Tensor.pin_memory = lambda self, *args, **kwargs: self
    _PATCHED = True


# The model configs the official sizes are read from (one source for the widths).
MODEL_CONFIGS = dict(full=osp.join(_REPO, 'configs', '_base_', 'models', 'sam3_vit-l.py'),
                     tiny=osp.join(_REPO, 'configs', '_base_', 'models', 'sam3_tiny.py'))
# The same models with the interactive (click) head: tracker neck + SAM prompt encoder / decoder.
INTERACTIVE_CONFIGS = dict(
    full=osp.join(_REPO, 'configs', '_base_', 'models', 'sam3_vit-l_interactive.py'),
    tiny=osp.join(_REPO, 'configs', '_base_', 'models', 'sam3_tiny_interactive.py'))


def official_sizes(size: str = 'tiny') -> dict:
    """Architecture sizes for the official classes, read from our model config of ``size``.

    ``full`` is what the official ``build_sam3_image_model`` builds; ``tiny`` keeps every
    mechanism (window + global blocks with RoPE interpolation, tiled position embedding, DAC,
    boxRPB, presence token, all heads) at widths that run in seconds on a CPU.
    """
    from mmengine.config import Config

    if size not in MODEL_CONFIGS:
        raise ValueError(f'unknown size {size!r}; choose from {sorted(MODEL_CONFIGS)}')
    m = Config.fromfile(MODEL_CONFIGS[size]).model
    vit, dec = m.backbone, m.decoder
    return dict(
        img_size=vit.img_size, pretrain_img_size=vit.pretrain_img_size, vit_dim=vit.embed_dims,
        vit_depth=vit.depth, vit_heads=vit.num_heads, mlp_ratio=vit.mlp_ratio,
        window_size=vit.window_size, global_att_blocks=tuple(vit.global_att_blocks),
        text_width=m.text_encoder.width, text_heads=m.text_encoder.heads,
        text_layers=m.text_encoder.layers, d_model=dec.embed_dims, dec_heads=dec.num_heads,
        dec_ffn_dim=dec.dim_feedforward, dec_layers=dec.num_layers, num_queries=dec.num_queries,
        enc_heads=m.encoder.num_heads, enc_ffn_dim=m.encoder.dim_feedforward,
        enc_layers=m.encoder.num_layers, geo_heads=m.geometry_encoder.num_heads,
        geo_ffn_dim=m.geometry_encoder.dim_feedforward, geo_layers=m.geometry_encoder.num_layers,
        mask_heads=m.bbox_head.mask_head.num_heads,
        scoring_hidden=m.bbox_head.scoring_head.mlp_hidden_dim)


def interactive_sizes(size: str = 'tiny') -> dict:
    """Sizes of the interactive head, read from our interactive config of ``size``."""
    from mmengine.config import Config

    head = Config.fromfile(INTERACTIVE_CONFIGS[size]).model.interactive_head
    dec = head.mask_decoder
    return dict(embed_dims=head.embed_dims, image_size=head.image_size,
                backbone_stride=head.backbone_stride,
                mask_in_chans=head.prompt_encoder.get('mask_in_chans', 16),
                depth=dec.transformer.depth, num_heads=dec.transformer.num_heads,
                mlp_dims=dec.transformer.mlp_dims, iou_head_depth=dec.iou_head_depth,
                iou_head_hidden_dim=dec.iou_head_hidden_dim)


def _build_official_tiny_tracker(s, d):
    """Meta's ``Sam3TrackerPredictor`` with the flags of ``build_tracker`` at tiny widths.

    The memory encoder / attention (video only) are Meta's classes at width ``d``; the SAM
    heads are rebuilt with the sizes of our tiny interactive config (Meta's ``_build_sam_heads``
    fixes 8 heads, an MLP of 2048 and an IoU head of 256).
    """
    from sam3.model.decoder import (TransformerDecoderLayerv2,
                                    TransformerEncoderCrossAttention)
    from sam3.model.memory import CXBlock, SimpleFuser, SimpleMaskDownSampler, SimpleMaskEncoder
    from sam3.model.model_misc import TransformerWrapper
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.sam3_tracking_predictor import Sam3TrackerPredictor
    from sam3.sam.mask_decoder import MaskDecoder
    from sam3.sam.transformer import RoPEAttention, TwoWayTransformer

    img = s['img_size']
    grid = img // 14
    mem_dim = max(d // 4, 8)
    maskmem = SimpleMaskEncoder(
        out_dim=mem_dim, in_dim=d,
        position_encoding=PositionEmbeddingSine(num_pos_feats=mem_dim, normalize=True,
                                                scale=None, temperature=10000,
                                                precompute_resolution=img),
        mask_downsampler=SimpleMaskDownSampler(embed_dim=d, kernel_size=3, stride=2, padding=1,
                                               interpol_size=[grid * 16, grid * 16]),
        fuser=SimpleFuser(layer=CXBlock(dim=d, kernel_size=7, padding=3,
                                        layer_scale_init_value=1e-6, use_dwconv=True),
                          num_layers=2))

    def rope(**kw):
        return RoPEAttention(embedding_dim=d, num_heads=1, downsample_rate=1, dropout=0.1,
                             rope_theta=10000.0, feat_sizes=[grid, grid], use_fa3=False,
                             use_rope_real=False, **kw)

    layer = TransformerDecoderLayerv2(
        cross_attention_first=False, activation='relu', dim_feedforward=2 * d, dropout=0.1,
        pos_enc_at_attn=False, pre_norm=True, self_attention=rope(), d_model=d,
        pos_enc_at_cross_attn_keys=True, pos_enc_at_cross_attn_queries=False,
        cross_attention=rope(kv_in_dim=mem_dim, rope_k_repeat=True))
    encoder = TransformerEncoderCrossAttention(
        remove_cross_attention_layers=[], batch_first=True, d_model=d, frozen=False,
        pos_enc_at_input=True, layer=layer, num_layers=2, use_act_checkpoint=False)
    transformer = TransformerWrapper(encoder=encoder, decoder=None, d_model=d)
    tracker = Sam3TrackerPredictor(
        image_size=img, num_maskmem=7, backbone=None, backbone_stride=14,
        transformer=transformer, maskmem_backbone=maskmem, multimask_output_in_sam=True,
        forward_backbone_per_frame_for_eval=True, trim_past_non_cond_mem_for_eval=False,
        multimask_output_for_tracking=True, multimask_min_pt_num=0, multimask_max_pt_num=1,
        always_start_from_first_ann_frame=False, non_overlap_masks_for_mem_enc=False,
        non_overlap_masks_for_output=False, max_cond_frames_in_attn=4,
        offload_output_to_cpu_for_eval=False,
        sam_mask_decoder_extra_args={'dynamic_multimask_via_stability': True,
                                     'dynamic_multimask_stability_delta': 0.05,
                                     'dynamic_multimask_stability_thresh': 0.98},
        clear_non_cond_mem_around_input=True, fill_hole_area=0, use_memory_selection=False)
    t = interactive_sizes('tiny')
    tracker.sam_mask_decoder = MaskDecoder(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=t['depth'], embedding_dim=d, mlp_dim=t['mlp_dims'],
                                      num_heads=t['num_heads']),
        transformer_dim=d, iou_head_depth=t['iou_head_depth'],
        iou_head_hidden_dim=t['iou_head_hidden_dim'], use_high_res_features=True,
        iou_prediction_use_sigmoid=True, pred_obj_scores=True, pred_obj_scores_mlp=True,
        use_multimask_token_for_obj_ptr=True, **tracker.sam_mask_decoder_extra_args)
    return tracker


def build_official_image_model(size='tiny', seed=0, bpe_path=None, eval_mode=True,
                                enable_segmentation=True, enable_inst_interactivity=False):
    """Build Meta's ``Sam3Image`` with random weights drawn from ``seed``.

    ``full`` goes through the official ``build_sam3_image_model``; ``tiny`` composes the same
    official classes with the flags that builder uses and the widths of
    ``official_sizes('tiny')`` (our tiny config). ``enable_inst_interactivity`` adds the
    tracker neck (``sam2_convs``) and ``inst_interactive_predictor`` (Meta's ``predict_inst``
    path); at tiny size its predictor's feature sizes are set to the tiny grid.
    """
    patch_official_for_cpu()
    from sam3 import model_builder as mb
    from sam3.model.decoder import TransformerDecoder, TransformerDecoderLayer
    from sam3.model.encoder import TransformerEncoderFusion, TransformerEncoderLayer
    from sam3.model.geometry_encoders import SequenceGeometryEncoder
    from sam3.model.maskformer_segmentation import PixelDecoder, UniversalSegmentationHead
    from sam3.model.model_misc import MLP, DotProductScoring
    from sam3.model.model_misc import MultiheadAttentionWrapper as MHA
    from sam3.model.model_misc import TransformerWrapper
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.text_encoder_ve import VETextEncoder
    from sam3.model.tokenizer_ve import SimpleTokenizer
    from sam3.model.vitdet import ViT
    from sam3.model.vl_combiner import SAM3VLBackbone

    bpe_path = bpe_path or BPE_PATH
    torch.manual_seed(seed)
    if size == 'full':
        model = mb.build_sam3_image_model(
            bpe_path=bpe_path, device='cpu', eval_mode=eval_mode, checkpoint_path=None,
            load_from_HF=False, enable_segmentation=enable_segmentation,
            enable_inst_interactivity=enable_inst_interactivity)
        _init_uninitialised_text_params(model, seed)
        return model
    s = official_sizes(size)
    d = s['d_model']

    def pos_enc(precompute=None):
        return PositionEmbeddingSine(num_pos_feats=d, normalize=True, scale=None,
                                     temperature=10000, precompute_resolution=precompute)

    vit = ViT(
        img_size=s['img_size'], pretrain_img_size=s['pretrain_img_size'], patch_size=14,
        embed_dim=s['vit_dim'], depth=s['vit_depth'], num_heads=s['vit_heads'],
        mlp_ratio=s['mlp_ratio'], norm_layer='LayerNorm', drop_path_rate=0.1, qkv_bias=True,
        use_abs_pos=True, tile_abs_pos=True, global_att_blocks=s['global_att_blocks'],
        rel_pos_blocks=(), use_rope=True, use_interp_rope=True, window_size=s['window_size'],
        pretrain_use_cls_token=True, retain_cls_token=False, ln_pre=True, ln_post=False,
        return_interm_layers=False, bias_patch_embed=False, compile_mode=None)
    neck = Sam3DualViTDetNeck(position_encoding=pos_enc(s['img_size']), d_model=d,
                              scale_factors=[4.0, 2.0, 1.0, 0.5], trunk=vit,
                              add_sam2_neck=enable_inst_interactivity)
    text = VETextEncoder(tokenizer=SimpleTokenizer(bpe_path=bpe_path), d_model=d,
                         width=s['text_width'], heads=s['text_heads'], layers=s['text_layers'])
    backbone = SAM3VLBackbone(visual=neck, text=text, scalp=1)

    def mha(num_heads, dropout=0.1, batch_first=False):
        return MHA(num_heads=num_heads, dropout=dropout, embed_dim=d, batch_first=batch_first)

    enc_layer = TransformerEncoderLayer(
        activation='relu', d_model=d, dim_feedforward=s['enc_ffn_dim'], dropout=0.1,
        pos_enc_at_attn=True, pos_enc_at_cross_attn_keys=False,
        pos_enc_at_cross_attn_queries=False, pre_norm=True,
        self_attention=mha(s['enc_heads'], batch_first=True),
        cross_attention=mha(s['enc_heads'], batch_first=True))
    encoder = TransformerEncoderFusion(
        layer=enc_layer, num_layers=s['enc_layers'], d_model=d, num_feature_levels=1,
        frozen=False, use_act_checkpoint=True, add_pooled_text_to_img_feat=False,
        pool_text_with_mask=True)
    dec_layer = TransformerDecoderLayer(
        activation='relu', d_model=d, dim_feedforward=s['dec_ffn_dim'], dropout=0.1,
        cross_attention=mha(s['dec_heads']), n_heads=s['dec_heads'],
        use_text_cross_attention=True)
    decoder = TransformerDecoder(
        layer=dec_layer, num_layers=s['dec_layers'], num_queries=s['num_queries'],
        return_intermediate=True, box_refine=True, num_o2m_queries=0, dac=True, boxRPB='log',
        d_model=d, frozen=False, interaction_layer=None, dac_use_selfatt_ln=True,
        resolution=s['img_size'], stride=14, use_act_checkpoint=True, presence_token=True)
    transformer = TransformerWrapper(encoder=encoder, decoder=decoder, d_model=d)
    scoring = DotProductScoring(
        d_model=d, d_proj=d,
        prompt_mlp=MLP(input_dim=d, hidden_dim=s['scoring_hidden'], output_dim=d, num_layers=2,
                       dropout=0.1, residual=True, out_norm=torch.nn.LayerNorm(d)))
    seg_head = None
    if enable_segmentation:
        seg_head = UniversalSegmentationHead(
            hidden_dim=d, upsampling_stages=3, aux_masks=False, presence_head=False,
            dot_product_scorer=None, act_ckpt=True,
            cross_attend_prompt=mha(s['mask_heads'], dropout=0),
            pixel_decoder=PixelDecoder(num_upsampling_stages=3, interpolation_mode='nearest',
                                       hidden_dim=d, compile_mode=None))
    geo_layer = TransformerEncoderLayer(
        activation='relu', d_model=d, dim_feedforward=s['geo_ffn_dim'], dropout=0.1,
        pos_enc_at_attn=False, pre_norm=True, self_attention=mha(s['geo_heads']),
        pos_enc_at_cross_attn_queries=False, pos_enc_at_cross_attn_keys=True,
        cross_attention=mha(s['geo_heads']))
    geometry = SequenceGeometryEncoder(
        pos_enc=pos_enc(), encode_boxes_as_points=False, points_direct_project=True,
        points_pool=True, points_pos_enc=True, boxes_direct_project=True, boxes_pool=True,
        boxes_pos_enc=True, d_model=d, num_layers=s['geo_layers'], layer=geo_layer,
        use_act_ckpt=True, add_cls=True, add_post_encode_proj=True)
    inst_predictor = None
    if enable_inst_interactivity:
        from sam3.model.sam1_task_predictor import SAM3InteractiveImagePredictor

        inst_predictor = SAM3InteractiveImagePredictor(_build_official_tiny_tracker(s, d))
        g = s['img_size'] // 14
        inst_predictor._bb_feat_sizes = [(4 * g, 4 * g), (2 * g, 2 * g), (g, g)]
    model = mb._create_sam3_model(backbone, transformer, geometry, seg_head, scoring,
                                  inst_predictor, eval_mode)
    _init_uninitialised_text_params(model, seed)
    return model.eval() if eval_mode else model


def _init_uninitialised_text_params(model, seed):
    """The official text encoder leaves two parameters as ``torch.empty``: give them values."""
    gen = torch.Generator().manual_seed(seed + 12345)
    enc = model.backbone.language_backbone.encoder
    with torch.no_grad():
        for p in (enc.positional_embedding, enc.text_projection):
            p.copy_(torch.randn(p.shape, generator=gen) * 0.01)


def official_state_dict_in_checkpoint_layout(model):
    """The image model's weights keyed as in ``sam3.pt``: ``detector.`` prefix, and the
    interactive predictor's model (Meta's tracker) as ``tracker.*`` (the inverse of Meta's
    ``_load_checkpoint``)."""
    out = {}
    inst = 'inst_interactive_predictor.model.'
    for k, v in model.state_dict().items():
        out[('tracker.' + k[len(inst):]) if k.startswith(inst) else f'detector.{k}'] = v
    return out


@torch.no_grad()
def run_official(model, image, text, boxes=None, box_labels=None):
    """One (image, prompt) through the official model, as ``Sam3Processor`` drives it.

    Args:
        image: (1, 3, H, W) float, already normalised to [-1, 1].
        text: the noun phrase (the official processor uses ``'visual'`` for box-only prompts).
        boxes: optional (N, 4) exemplar boxes, normalised cx, cy, w, h.
        box_labels: optional (N,) bool, True for positive exemplars.

    Returns:
        dict with ``pred_logits`` (1, Q, 1), ``pred_boxes`` (1, Q, 4) cxcywh, ``presence_logit_dec``
        (1, 1), ``pred_masks`` (1, Q, h, w) and ``semantic_seg`` (1, 1, h, w) when segmenting.
    """
    from sam3.model.data_misc import FindStage

    backbone_out = model.backbone.forward_image(image)
    backbone_out.update(model.backbone.forward_text([text], device=image.device))
    geometric_prompt = model._get_dummy_prompt()
    if boxes is not None and len(boxes):
        labels = (torch.ones(len(boxes), dtype=torch.bool)
                  if box_labels is None else torch.as_tensor(box_labels, dtype=torch.bool))
        geometric_prompt.append_boxes(boxes.float().view(-1, 1, 4), labels.view(-1, 1))
    find_stage = FindStage(
        img_ids=torch.tensor([0], dtype=torch.long), text_ids=torch.tensor([0], dtype=torch.long),
        input_boxes=None, input_boxes_mask=None, input_boxes_label=None, input_points=None,
        input_points_mask=None)
    out = model.forward_grounding(backbone_out=backbone_out, find_input=find_stage,
                                  geometric_prompt=geometric_prompt, find_target=None)
    keys = ('pred_logits', 'pred_boxes', 'presence_logit_dec', 'pred_masks', 'semantic_seg')
    return {k: out[k] for k in keys if out.get(k) is not None}


def import_official_optim():
    """Import ``sam3.train.optim.{optimizer,schedulers}`` (the official optimiser helpers).

    ``optimizer.py`` imports ``hydra`` and ``omegaconf`` at module level but the helpers used for
    parity (pattern matching, layer decay, param-group mapping) need only ``hydra.utils.get_class``.
    When those packages are absent, minimal stand-ins are placed in ``sys.modules`` for the
    import and removed afterwards.

    Returns:
        tuple: ``(optimizer_module, schedulers_module)``.
    """
    import importlib
    import sys

    stubs = {}
    for name in ('hydra', 'omegaconf'):
        try:
            importlib.import_module(name)
        except ImportError:
            stubs[name] = types.ModuleType(name)
    if 'hydra' in stubs:

        def get_class(path):
            module, _, attr = path.rpartition('.')
            return getattr(importlib.import_module(module), attr)

        def instantiate(*args, **kwargs):
            raise NotImplementedError('hydra is not installed; build the objects directly')

        utils = types.ModuleType('hydra.utils')
        utils.get_class, utils.instantiate = get_class, instantiate
        stubs['hydra'].utils = utils
        stubs['hydra.utils'] = utils
    if 'omegaconf' in stubs:
        stubs['omegaconf'].DictConfig = dict
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        optimizer = importlib.import_module('sam3.train.optim.optimizer')
        schedulers = importlib.import_module('sam3.train.optim.schedulers')
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    return optimizer, schedulers
