"""Optimizer constructor reproducing the official SAM 3 fine-tuning parameter groups.

The official recipe (``sam3/train`` RF100-VL / ODinW configs, spec section 4.5) gives every
parameter three numbers:

* a **per-component learning rate**: the vision backbone (ViT trunk *and* neck convs), the text
  encoder and "everything else" each have their own base lr;
* a **layer-wise lr decay** scale for the ViT trunk: ``decay ** (depth + 1 - layer_id)`` with the
  layer ids of :func:`mmsam3.models.backbones.sam3_vit.get_vit_layer_id`, ``*pos_embed*`` overridden
  to 1.0; neck and every other parameter keep scale 1.0;
* a **weight decay**: 0 for any parameter whose full name matches ``*bias*`` and for parameters
  owned directly by a module whose type is *exactly* ``torch.nn.LayerNorm`` (the official code
  compares ``type(module)``, so GroupNorm, embeddings and ``pos_embed`` keep the decay).

mmengine's ``DefaultOptimWrapperConstructor`` ``paramwise_cfg`` (substring ``custom_keys``,
``norm_decay_mult`` that also hits GroupNorm, ``bias_decay_mult`` only for ``*.bias``) cannot
express these rules exactly, so :class:`SAM3OptimWrapperConstructor` replaces ``add_params`` and
keeps the rest of the mmengine machinery (optimizer / wrapper building, ``auto_scale_lr``).
Parameters with the same ``(lr, weight_decay)`` share one param group.
"""
import fnmatch
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmsam3.models.backbones.sam3_vit import get_vit_layer_id

# The official recipe (RF100-VL full fine-tune and ODinW13 train: identical optimiser settings).
# Base lrs are `lr * lr_scale` of the official yaml (8e-4, 2.5e-4, 5e-5 times 0.1).
OFFICIAL_LR = 8e-5
OFFICIAL_WEIGHT_DECAY = 0.1
OFFICIAL_PARAMWISE_CFG = dict(
    component_lr=dict(backbone=2.5e-5, neck=2.5e-5, text_encoder=5e-6),
    layer_decay=dict(module='backbone', rate=0.9,
                     overrides=[dict(pattern='*pos_embed*', value=1.0)]),
    no_decay_names=['*bias*'],
    no_decay_norm_types=['LayerNorm'],
)

_NORM_TYPES = {
    'LayerNorm': nn.LayerNorm,
    'GroupNorm': nn.GroupNorm,
    'BatchNorm1d': nn.BatchNorm1d,
    'BatchNorm2d': nn.BatchNorm2d,
    'SyncBatchNorm': nn.SyncBatchNorm,
    'InstanceNorm2d': nn.InstanceNorm2d,
    'Embedding': nn.Embedding,
}


def layer_decay_lr_scale(name: str,
                         num_layers: int,
                         decay: float,
                         overrides: Sequence[dict] = ()) -> float:
    """Layer-wise lr-decay scale of one ViT parameter (official ``layer_decay_param_modifier``).

    Args:
        name (str): parameter name, with or without the ``backbone.`` prefix
            (e.g. ``'backbone.blocks.3.attn.qkv.weight'``). Pass ViT parameters only.
        num_layers (int): number of ViT blocks (32 for SAM 3).
        decay (float): decay rate (0.9 official).
        overrides (list[dict]): ``dict(pattern=fnmatch_pattern, value=scale)``; the first pattern
            matching ``name`` wins (official: ``*pos_embed*`` -> 1.0).

    Returns:
        float: ``decay ** (num_layers + 1 - layer_id)``: ``patch_embed`` / ``ln_pre`` get
        ``decay ** (num_layers + 1)``, block ``k`` gets ``decay ** (num_layers - k)`` and
        parameters outside the blocks (layer ``num_layers + 1``) get 1.0.
    """
    for override in overrides:
        if fnmatch.fnmatchcase(name, override['pattern']):
            return float(override['value'])
    layer_id = get_vit_layer_id(name, num_layers)
    return decay**(num_layers + 1 - layer_id)


def _owner_types(model: nn.Module) -> Dict[str, type]:
    """Full parameter name -> type of the module that directly owns it."""
    owners = {}
    for module_name, module in model.named_modules():
        for param_name, _ in module.named_parameters(recurse=False):
            full = f'{module_name}.{param_name}' if module_name else param_name
            owners[full] = type(module)
    return owners


def sam3_param_options(model: nn.Module, base_lr: float, base_wd: float,
                       paramwise_cfg: Optional[dict] = None) -> 'OrderedDict[str, Tuple]':
    """Per-parameter ``(lr, weight_decay)`` for ``model`` under the SAM 3 rules.

    Args:
        model (nn.Module): the detector (unwrapped); names are its ``named_parameters``.
        base_lr (float): lr of parameters no ``component_lr`` entry matches.
        base_wd (float): weight decay of parameters not excluded.
        paramwise_cfg (dict): keys

            - ``component_lr`` (dict): top-level child name -> absolute base lr.
            - ``layer_decay`` (dict): ``module`` (child holding a ViT with ``num_layers`` /
              ``depth``), ``rate``, optional ``overrides`` (fnmatch on the full name).
            - ``no_decay_names`` (list[str]): fnmatch patterns on the full name -> wd 0.
            - ``no_decay_norm_types`` (list[str | type]): parameters owned directly by a
              module of exactly this type -> wd 0.

    Returns:
        OrderedDict[str, tuple[float, float]]: name -> (lr, weight_decay), in
        ``named_parameters`` order, for every parameter (frozen ones included).
    """
    cfg = dict(paramwise_cfg or {})
    unknown = set(cfg) - {'component_lr', 'layer_decay', 'no_decay_names', 'no_decay_norm_types',
                          'skip_frozen'}
    if unknown:
        raise KeyError(f'unknown SAM3OptimWrapperConstructor paramwise_cfg keys {sorted(unknown)}')
    component_lr = dict(cfg.get('component_lr') or {})
    children = dict(model.named_children())
    missing = [k for k in component_lr if k not in children]
    if missing:
        raise KeyError(f'component_lr names {missing} that are not children of '
                       f'{type(model).__name__} ({sorted(children)})')

    layer_decay = cfg.get('layer_decay') or None
    if layer_decay is not None:
        ld_module = layer_decay.get('module', 'backbone')
        if ld_module not in children:
            raise KeyError(f'layer_decay.module {ld_module!r} is not a child of the model')
        vit = children[ld_module]
        num_layers = getattr(vit, 'num_layers', None) or getattr(vit, 'depth', None)
        if num_layers is None:
            raise AttributeError(f'layer_decay needs `{ld_module}.num_layers` (or `depth`)')
        ld_rate = float(layer_decay['rate'])
        ld_overrides = list(layer_decay.get('overrides') or ())
        ld_prefix = ld_module + '.'

    no_decay_names = list(cfg.get('no_decay_names') or ())
    norm_types = []
    for t in cfg.get('no_decay_norm_types') or ():
        if isinstance(t, str):
            if t not in _NORM_TYPES:
                raise KeyError(f'unknown no_decay_norm_types entry {t!r}; use one of '
                               f'{sorted(_NORM_TYPES)} or pass the class')
            t = _NORM_TYPES[t]
        norm_types.append(t)
    owners = _owner_types(model)

    options = OrderedDict()
    for name, _ in model.named_parameters():
        lr = float(component_lr.get(name.split('.', 1)[0], base_lr))
        if layer_decay is not None and name.startswith(ld_prefix):
            lr *= layer_decay_lr_scale(name, num_layers, ld_rate, ld_overrides)
        wd = base_wd
        if any(fnmatch.fnmatchcase(name, p) for p in no_decay_names):
            wd = 0.0
        # Exact type, like the official `type(module)` lookup: subclasses are not matched.
        elif owners.get(name) in norm_types:
            wd = 0.0
        options[name] = (lr, wd)
    return options


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class SAM3OptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """Official SAM 3 per-parameter lr / weight decay (see the module docstring).

    Example::

        optim_wrapper = dict(
            type='OptimWrapper',
            constructor='SAM3OptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=8e-5, weight_decay=0.1),
            paramwise_cfg=dict(
                component_lr=dict(backbone=2.5e-5, neck=2.5e-5, text_encoder=5e-6),
                layer_decay=dict(module='backbone', rate=0.9,
                                 overrides=[dict(pattern='*pos_embed*', value=1.0)]),
                no_decay_names=['*bias*'],
                no_decay_norm_types=['LayerNorm'],
                skip_frozen=True),
            clip_grad=dict(max_norm=0.1, norm_type=2))

    ``optimizer.lr`` / ``optimizer.weight_decay`` are the defaults ("transformer" group).
    ``skip_frozen`` (default True) leaves parameters with ``requires_grad=False`` (frozen
    towers, LoRA base weights, dead official weights) out of the optimizer. With an empty
    ``paramwise_cfg`` every parameter gets the optimizer defaults.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        paramwise_cfg = dict(paramwise_cfg or {})
        self.skip_frozen = bool(paramwise_cfg.pop('skip_frozen', True))
        # Keep a non-empty paramwise_cfg so mmengine always routes through `add_params`.
        super().__init__(optim_wrapper_cfg, None)
        self.paramwise_cfg = paramwise_cfg
        self.sam3_paramwise_cfg = paramwise_cfg

    def _validate_cfg(self) -> None:  # our keys are validated in `sam3_param_options`
        pass

    def __call__(self, model: nn.Module):
        if hasattr(model, 'module'):
            model = model.module
        optim_wrapper_cfg = self.optim_wrapper_cfg.copy()
        optim_wrapper_cfg.setdefault('type', 'OptimWrapper')
        optimizer_cfg = self.optimizer_cfg.copy()
        params: List[dict] = []
        self.add_params(params, model)
        optimizer_cfg['params'] = params
        from mmengine.registry import OPTIM_WRAPPERS, OPTIMIZERS
        optimizer = OPTIMIZERS.build(optimizer_cfg)
        return OPTIM_WRAPPERS.build(optim_wrapper_cfg, default_args=dict(optimizer=optimizer))

    def add_params(self, params: List[dict], module: nn.Module, prefix: str = '', **kwargs):
        """Append one param group per distinct ``(lr, weight_decay)`` to ``params``."""
        options = sam3_param_options(module, self.base_lr, self.base_wd or 0.0,
                                     self.sam3_paramwise_cfg)
        named = dict(module.named_parameters())
        groups: 'OrderedDict[Tuple[float, float], dict]' = OrderedDict()
        num_frozen = 0
        for name, (lr, wd) in options.items():
            param = named[name]
            if self.skip_frozen and not param.requires_grad:
                num_frozen += 1
                continue
            group = groups.setdefault((lr, wd), dict(params=[], lr=lr, weight_decay=wd))
            group['params'].append(param)
        params.extend(groups.values())
        if num_frozen:
            print_log(f'SAM3OptimWrapperConstructor: {num_frozen} frozen parameters left out of '
                      f'the optimizer; {len(groups)} param groups', logger='current')
