"""What a student keeps of its teacher, read from the two built models and checked for fit.

Everything is read from the modules themselves (block counts, widths, heads, queries), not from
config keys, so a plan is the same whatever the configs call their sizes. Indices always refer
to the teacher: ``vit_blocks[i]`` is the teacher block that student block ``i`` starts from,
``vit_heads[i]`` the teacher heads it keeps, and so on.
"""
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence

from torch import nn

__all__ = ['CompressionError', 'CompressionPlan', 'make_plan', 'model_sizes']


class CompressionError(ValueError):
    """A student that does not fit its teacher, or a teacher that does not fit its config."""


@dataclass
class CompressionPlan:
    """Teacher indices kept by the student (all lists are sorted teacher indices).

    Attributes:
        vit_blocks (list[int]): teacher ViT block of each student block.
        vit_channels (list[int]): residual (embedding) channels kept, all blocks alike.
        vit_heads (list[list[int]]): attention heads kept in each student block.
        vit_mlp (list[list[int]]): MLP hidden channels kept in each student block.
        text_layers / text_mlp: text-encoder blocks and their MLP channels.
        geometry_layers / geometry_ffn, encoder_layers / encoder_ffn,
        decoder_layers / decoder_ffn: layers of the geometry, fusion and decoder stacks and
            their FFN hidden channels.
        queries (list[int]): learned decoder queries (and their reference boxes) kept.
        block_scores (list[float] | None): ranking scores of the teacher's ViT blocks when the
            ranking mode chose the windowed blocks.
    """
    vit_blocks: List[int]
    vit_channels: List[int]
    vit_heads: List[List[int]]
    vit_mlp: List[List[int]]
    text_layers: List[int]
    text_mlp: List[List[int]]
    geometry_layers: List[int]
    geometry_ffn: List[List[int]]
    encoder_layers: List[int]
    encoder_ffn: List[List[int]]
    decoder_layers: List[int]
    decoder_ffn: List[List[int]]
    queries: List[int]
    block_scores: Optional[List[float]] = None
    sizes: Dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> List[str]:
        """Readable lines: what was kept of what."""
        t, s = self.sizes.get('teacher', {}), self.sizes.get('student', {})

        def frac(kept, total):
            return f'{kept}/{total}'

        lines = [
            f"ViT blocks {frac(len(self.vit_blocks), t.get('vit_depth'))}: {self.vit_blocks} "
            f"(global {s.get('vit_global')} <- teacher {t.get('vit_global')})",
            f"ViT width {frac(len(self.vit_channels), t.get('vit_embed'))} channels, heads "
            f"{frac(len(self.vit_heads[0]) if self.vit_heads else 0, t.get('vit_heads'))}, MLP "
            f"{frac(len(self.vit_mlp[0]) if self.vit_mlp else 0, t.get('vit_mlp'))}",
            f"text layers {frac(len(self.text_layers), t.get('text_layers'))}: {self.text_layers}"
            f", MLP {frac(len(self.text_mlp[0]) if self.text_mlp else 0, t.get('text_mlp'))}",
            f"geometry layers {frac(len(self.geometry_layers), t.get('geometry_layers'))}: "
            f"{self.geometry_layers}",
            f"fusion-encoder layers {frac(len(self.encoder_layers), t.get('encoder_layers'))}: "
            f"{self.encoder_layers}, FFN "
            f"{frac(len(self.encoder_ffn[0]) if self.encoder_ffn else 0, t.get('encoder_ffn'))}",
            f"decoder layers {frac(len(self.decoder_layers), t.get('decoder_layers'))}: "
            f"{self.decoder_layers}, FFN "
            f"{frac(len(self.decoder_ffn[0]) if self.decoder_ffn else 0, t.get('decoder_ffn'))}",
            f"queries {frac(len(self.queries), t.get('queries'))}"
            + ('' if len(self.queries) == t.get('queries') else f': {_short(self.queries)}'),
            f"input size {t.get('img_size')} -> {s.get('img_size')}",
        ]
        if self.block_scores is not None:
            lines.append('ViT block scores (1 - cos(in, out), higher = changes its input more): '
                         + ', '.join(f'{i}:{v:.3f}' for i, v in enumerate(self.block_scores)))
        return lines


def _short(idx: Sequence[int]) -> str:
    idx = list(idx)
    return str(idx) if len(idx) <= 12 else f'[{idx[0]}, {idx[1]}, ..., {idx[-1]}]'


def model_sizes(model: nn.Module) -> dict:
    """Sizes of a built ``SAM3`` read from its modules (robust to config key names)."""
    vit = model.backbone
    blocks = list(vit.blocks)
    text = model.text_encoder.encoder
    resblocks = list(text.transformer.resblocks)
    dec = model.decoder
    first = blocks[0] if blocks else None
    return dict(
        vit_depth=len(blocks),
        vit_global=tuple(i for i, b in enumerate(blocks) if b.window_size == 0),
        vit_window=max([b.window_size for b in blocks] + [0]),
        vit_embed=int(vit.patch_embed.proj.weight.shape[0]),
        vit_heads=first.attn.num_heads if first else 0,
        vit_head_dim=first.attn.head_dim if first else 0,
        vit_mlp=first.mlp.fc1.out_features if first else 0,
        vit_pos_rows=int(vit.pos_embed.shape[1]),
        patch_size=int(vit.patch_embed.proj.weight.shape[-1]),
        img_size=int(getattr(vit, 'img_size', 0)),
        text_layers=len(resblocks),
        text_width=int(text.token_embedding.weight.shape[1]),
        text_heads=resblocks[0].attn.num_heads if resblocks else 0,
        text_mlp=resblocks[0].mlp.c_fc.out_features if resblocks else 0,
        geometry_layers=len(model.geometry_encoder.encode),
        geometry_ffn=_ffn(model.geometry_encoder.encode),
        encoder_layers=len(model.encoder.layers),
        encoder_ffn=_ffn(model.encoder.layers),
        decoder_layers=len(dec.layers),
        decoder_ffn=_ffn(dec.layers),
        d_model=int(dec.query_embed.weight.shape[1]),
        queries=int(dec.query_embed.weight.shape[0]),
    )


def _ffn(layers) -> int:
    return layers[0].linear1.out_features if len(layers) else 0


def _check_fit(t: dict, s: dict) -> None:
    """Raise :class:`CompressionError` naming the first student size that cannot come from
    the teacher."""
    def need(ok, msg):
        if not ok:
            raise CompressionError(msg)

    need(s['patch_size'] == t['patch_size'],
         f"patch size {s['patch_size']} != the teacher's {t['patch_size']}")
    need(s['vit_pos_rows'] == t['vit_pos_rows'],
         f"backbone.pretrain_img_size gives a {s['vit_pos_rows']}-row position table, the "
         f"teacher's has {t['vit_pos_rows']}: keep the teacher's pretrain_img_size (the table is "
         'tiled to any input size)')
    need(s['vit_window'] == t['vit_window'],
         f"window size {s['vit_window']} != the teacher's {t['vit_window']}")
    hd = t['vit_head_dim']
    need(s['vit_embed'] % hd == 0 and s['vit_embed'] <= t['vit_embed'],
         f"student ViT width {s['vit_embed']} is not a multiple of the teacher's head size {hd} "
         f"(at most {t['vit_embed']}): heads are pruned whole (RoPE spans the head dimension), "
         f"so use a width k * {hd} with num_heads = k")
    need(s['vit_head_dim'] == hd,
         f"student ViT head size {s['vit_head_dim']} (width {s['vit_embed']} / "
         f"{s['vit_heads']} heads) != the teacher's {hd}: set num_heads = "
         f"{s['vit_embed'] // hd}")
    need(s['vit_mlp'] <= t['vit_mlp'],
         f"student ViT MLP width {s['vit_mlp']} > the teacher's {t['vit_mlp']}")
    need(s['text_width'] == t['text_width'] and s['text_heads'] == t['text_heads'],
         f"text width/heads {s['text_width']}/{s['text_heads']} != the teacher's "
         f"{t['text_width']}/{t['text_heads']} (only text depth and MLP width are compressed)")
    need(s['d_model'] == t['d_model'],
         f"d_model {s['d_model']} != the teacher's {t['d_model']} (fusion / decoder width is "
         'shared by every prompt stage and is not compressed)')
    for name, what in (('text_layers', 'text-encoder layers'),
                       ('geometry_layers', 'geometry-encoder layers'),
                       ('encoder_layers', 'fusion-encoder layers'),
                       ('decoder_layers', 'decoder layers'), ('queries', 'decoder queries'),
                       ('text_mlp', 'text MLP channels'), ('encoder_ffn', 'fusion FFN channels'),
                       ('decoder_ffn', 'decoder FFN channels'),
                       ('geometry_ffn', 'geometry FFN channels')):
        need(s[name] <= t[name],
             f'the student has {s[name]} {what}, more than the teacher\'s {t[name]}')


def _explicit(name: str, given, length: int, total: int) -> List[int]:
    idx = [int(i) for i in given]
    if len(idx) != length:
        raise CompressionError(f'compress_cfg.{name} lists {len(idx)} indices, the student has '
                               f'{length}')
    bad = [i for i in idx if not 0 <= i < total]
    if bad or len(set(idx)) != len(idx) or idx != sorted(idx):
        raise CompressionError(f'compress_cfg.{name} {idx}: indices must be increasing, distinct '
                               f'and in 0..{total - 1}')
    return idx


def make_plan(teacher: nn.Module, student: nn.Module, compress_cfg: Optional[dict] = None,
              block_scores: Optional[Sequence[float]] = None) -> CompressionPlan:
    """Plan how ``student`` is cut out of ``teacher`` (both built ``SAM3`` models).

    Args:
        teacher, student: the models; only their structure is read (and the teacher's weights,
            for width importance).
        compress_cfg (dict, optional): explicit teacher indices overriding the defaults:
            ``vit_blocks``, ``text_layers``, ``geometry_layers``, ``encoder_layers``,
            ``decoder_layers``, ``queries``.
        block_scores (Sequence[float], optional): ranking scores of the teacher's ViT blocks;
            the windowed blocks kept are then the best-scored of each segment.

    Returns:
        CompressionPlan. Layers default to evenly spaced (first and last kept), queries to the
        first ones, heads and channels to the most important by weight magnitude
        (:mod:`.width_importance`).
    """
    from .layer_selection import evenly_spaced, select_vit_blocks
    from .width_importance import (ffn_channels, head_order, residual_order, top_k,
                                   vit_mlp_channels)
    cfg = dict(compress_cfg or {})
    unknown = set(cfg) - {'vit_blocks', 'text_layers', 'geometry_layers', 'encoder_layers',
                          'decoder_layers', 'queries'}
    if unknown:
        raise CompressionError(f'compress_cfg has unknown keys {sorted(unknown)}')
    t, s = model_sizes(teacher), model_sizes(student)
    _check_fit(t, s)
    if 'vit_blocks' in cfg:
        vit_blocks = _explicit('vit_blocks', cfg['vit_blocks'], s['vit_depth'], t['vit_depth'])
        lands = tuple(i for i, b in enumerate(vit_blocks) if b in t['vit_global'])
        if lands != s['vit_global'] or len(lands) != len(t['vit_global']):
            raise CompressionError(
                f"compress_cfg.vit_blocks {vit_blocks}: the teacher's global blocks "
                f"{t['vit_global']} must all be kept and land on the student's global_att_blocks "
                f"{s['vit_global']} (they land on {lands})")
    else:
        vit_blocks = select_vit_blocks(t['vit_depth'], t['vit_global'], s['vit_depth'],
                                       s['vit_global'], block_scores)

    def layers(name, size):
        if name in cfg:
            return _explicit(name, cfg[name], s[size], t[size])
        return evenly_spaced(s[size], range(t[size]))

    sd = {k: v.detach() for k, v in teacher.state_dict().items()}
    hd = t['vit_head_dim']
    channels = top_k(residual_order(sd, t['vit_depth']), s['vit_embed'])
    vit_heads = [top_k(head_order(sd, b, t['vit_heads'], hd), s['vit_heads']) for b in vit_blocks]
    vit_mlp = [top_k(vit_mlp_channels(sd, b), s['vit_mlp']) for b in vit_blocks]
    text_layers = layers('text_layers', 'text_layers')
    text_prefix = 'text_encoder.encoder.transformer.resblocks.{}.mlp.'
    text_mlp = [top_k(ffn_channels(sd, text_prefix.format(i) + 'c_fc', text_prefix.format(i)
                                   + 'c_proj'), s['text_mlp']) for i in text_layers]

    def stack(name, prefix, size, ffn):
        idx = layers(name, size)
        chans = [top_k(ffn_channels(sd, f'{prefix}.{i}.linear1', f'{prefix}.{i}.linear2'), s[ffn])
                 for i in idx]
        return idx, chans

    geo_layers, geo_ffn = stack('geometry_layers', 'geometry_encoder.encode', 'geometry_layers',
                                'geometry_ffn')
    enc_layers, enc_ffn = stack('encoder_layers', 'encoder.layers', 'encoder_layers',
                                'encoder_ffn')
    dec_layers, dec_ffn = stack('decoder_layers', 'decoder.layers', 'decoder_layers',
                                'decoder_ffn')
    if 'queries' in cfg:
        queries = _explicit('queries', cfg['queries'], s['queries'], t['queries'])
    else:
        queries = list(range(s['queries']))
    return CompressionPlan(
        vit_blocks=vit_blocks, vit_channels=channels, vit_heads=vit_heads, vit_mlp=vit_mlp,
        text_layers=text_layers, text_mlp=text_mlp, geometry_layers=geo_layers,
        geometry_ffn=geo_ffn, encoder_layers=enc_layers, encoder_ffn=enc_ffn,
        decoder_layers=dec_layers, decoder_ffn=dec_ffn, queries=queries,
        block_scores=None if block_scores is None else [float(x) for x in block_scores],
        sizes=dict(teacher=t, student=s))
