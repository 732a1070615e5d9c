"""Cut a student's state dict out of its teacher's, following a :class:`CompressionPlan`.

Every student tensor comes from exactly one teacher tensor: first the layer index is remapped
(student block ``i`` <- teacher block ``plan.vit_blocks[i]``, likewise for the text, geometry,
fusion and decoder stacks), then rows / columns are selected where the student is narrower:

* ViT: residual channels ``R`` (patch embedding, position table, every LayerNorm, the rows
  written by ``attn.proj`` / ``mlp.fc2``, the columns read by ``qkv`` / ``fc1``), whole heads
  (their ``head_dim`` rows in each of the q, k and v thirds of ``qkv`` and their columns of
  ``proj``), MLP hidden channels (rows of ``fc1``, columns of ``fc2``);
* neck: the input channels ``R``, then, level by level, the most important output channels of
  each (transposed) convolution narrower in the student;
* FFNs of the text, geometry, fusion and decoder layers: hidden channels;
* decoder: the kept learned queries and their reference boxes.

A student tensor that matches no rule and differs in shape raises :class:`CompressionError`
naming it.
"""
from typing import Dict, List, Optional

import torch
from torch import Tensor, nn

from .compression_plan import CompressionError, CompressionPlan

__all__ = ['compress_state_dict', 'remap_layer_key']

_STACKS = (  # (key prefix, plan attribute of the kept teacher indices)
    ('backbone.blocks.', 'vit_blocks'),
    ('text_encoder.encoder.transformer.resblocks.', 'text_layers'),
    ('geometry_encoder.encode.', 'geometry_layers'),
    ('encoder.layers.', 'encoder_layers'),
    ('decoder.layers.', 'decoder_layers'),
)
_FFN = {  # stack prefix -> (plan attribute, in-layer, out-layer)
    'text_encoder.encoder.transformer.resblocks.': ('text_mlp', 'mlp.c_fc', 'mlp.c_proj'),
    'geometry_encoder.encode.': ('geometry_ffn', 'linear1', 'linear2'),
    'encoder.layers.': ('encoder_ffn', 'linear1', 'linear2'),
    'decoder.layers.': ('decoder_ffn', 'linear1', 'linear2'),
}


def remap_layer_key(key: str, plan: CompressionPlan):
    """``(teacher key, stack prefix or None, student layer index or None)`` of a student key."""
    for prefix, attr in _STACKS:
        if key.startswith(prefix):
            idx, rest = key[len(prefix):].split('.', 1)
            kept = getattr(plan, attr)
            return f'{prefix}{kept[int(idx)]}.{rest}', prefix, int(idx)
    return key, None, None


def _take(t: Tensor, dim: int, idx: Optional[List[int]]) -> Tensor:
    if idx is None or len(idx) == t.shape[dim]:
        return t
    return t.index_select(dim, torch.as_tensor(idx, dtype=torch.long, device=t.device))


def _vit_rules(rest: str, block: Optional[int], plan: CompressionPlan, embed: int,
               head_dim: int):
    """(dim, indices) selections for a ViT parameter name (without ``backbone.``)."""
    r = plan.vit_channels
    if rest == 'pos_embed':
        return [(2, r)]
    if rest in ('patch_embed.proj.weight', 'ln_pre.weight', 'ln_pre.bias'):
        return [(0, r)]
    if block is None:
        return None
    heads = plan.vit_heads[block]
    att = [h * head_dim + j for h in heads for j in range(head_dim)]
    mlp = plan.vit_mlp[block]
    rules = {
        'norm1.weight': [(0, r)], 'norm1.bias': [(0, r)], 'norm2.weight': [(0, r)],
        'norm2.bias': [(0, r)],
        'attn.qkv.weight': [(0, att + [embed + i for i in att] + [2 * embed + i for i in att]),
                            (1, r)],
        'attn.qkv.bias': [(0, att + [embed + i for i in att] + [2 * embed + i for i in att])],
        'attn.proj.weight': [(0, r), (1, att)], 'attn.proj.bias': [(0, r)],
        'mlp.fc1.weight': [(0, mlp), (1, r)], 'mlp.fc1.bias': [(0, mlp)],
        'mlp.fc2.weight': [(0, r), (1, mlp)], 'mlp.fc2.bias': [(0, r)],
    }
    return rules.get(rest)


def _neck_selections(teacher_sd: Dict[str, Tensor], student: nn.Module,
                     channels: List[int]) -> Dict[str, list]:
    """Per neck parameter, its (dim, indices) selections: each level's convolutions in order,
    the first reading the kept ViT channels, each narrower output picked by filter norm."""
    out = {}
    neck = getattr(student, 'neck', None)
    if neck is None or not hasattr(neck, 'convs'):
        return out
    for lvl, level in enumerate(neck.convs):
        in_idx = channels
        for name, mod in level.named_children():
            if not isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                continue
            key = f'neck.convs.{lvl}.{name}'
            w_t = teacher_sd.get(key + '.weight')
            if w_t is None:
                raise CompressionError(f'teacher has no {key}.weight')
            transposed = isinstance(mod, nn.ConvTranspose2d)
            in_dim, out_dim = (0, 1) if transposed else (1, 0)
            n_out = mod.weight.shape[out_dim]
            if n_out < w_t.shape[out_dim]:
                score = w_t.float().transpose(0, out_dim).flatten(1).norm(dim=1)
                order = torch.sort(score, descending=True, stable=True).indices.tolist()
                out_idx = sorted(order[:n_out])
            else:
                out_idx = None
            out[key + '.weight'] = [(in_dim, in_idx), (out_dim, out_idx)]
            out[key + '.bias'] = [(0, out_idx)]
            in_idx = out_idx
    return out


def compress_state_dict(teacher_sd: Dict[str, Tensor], student: nn.Module,
                        plan: CompressionPlan) -> Dict[str, Tensor]:
    """The student's full state dict, every entry cut out of ``teacher_sd``.

    Args:
        teacher_sd (dict): the teacher's state dict (``SAM3`` keys).
        student (nn.Module): the built student ``SAM3`` (gives the target keys and shapes).
        plan (CompressionPlan): what to keep (:func:`~.compression_plan.make_plan`).

    Returns:
        dict: tensors (cloned, contiguous) with exactly the student's keys and shapes.
    """
    t_sizes = plan.sizes['teacher']
    embed, head_dim = t_sizes['vit_embed'], t_sizes['vit_head_dim']
    neck_rules = _neck_selections(teacher_sd, student, plan.vit_channels)
    result = {}
    for key, target in student.state_dict().items():
        t_key, stack, layer = remap_layer_key(key, plan)
        if t_key not in teacher_sd:
            raise CompressionError(f'student parameter {key} (teacher {t_key}) is not in the '
                                   'teacher state dict')
        value = teacher_sd[t_key]
        rules = None
        if key.startswith('backbone.'):
            rest = key[len('backbone.'):]
            if stack is not None:
                rest = rest.split('.', 2)[2]
            rules = _vit_rules(rest, layer, plan, embed, head_dim)
        elif key in neck_rules:
            rules = neck_rules[key]
        elif stack in _FFN:
            attr, fc_in, fc_out = _FFN[stack]
            rest = key[len(stack):].split('.', 1)[1]
            chans = getattr(plan, attr)[layer]
            rules = {f'{fc_in}.weight': [(0, chans)], f'{fc_in}.bias': [(0, chans)],
                     f'{fc_out}.weight': [(1, chans)]}.get(rest)
        elif key in ('decoder.query_embed.weight', 'decoder.reference_points.weight'):
            rules = [(0, plan.queries)]
        for dim, idx in rules or ():
            value = _take(value, dim, idx)
        if tuple(value.shape) != tuple(target.shape):
            raise CompressionError(
                f'student {key} has shape {tuple(target.shape)}, the teacher\'s {t_key} '
                f'{tuple(teacher_sd[t_key].shape)}, and no compression rule maps one to the other')
        result[key] = value.clone().contiguous().to(target.dtype)
    return result


