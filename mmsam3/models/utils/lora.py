"""LoRA adapters on the SAM 3 image and text towers, through ``peft``.

:func:`apply_lora` injects ``peft`` LoRA layers (``peft.inject_adapter_in_model``, no PeftModel
wrapper, so the detector and its state-dict names stay mmengine-friendly) into:

* the ViT (``backbone``): ``blocks.k.attn.qkv``, ``blocks.k.attn.proj``, ``blocks.k.mlp.fc1``,
  ``blocks.k.mlp.fc2`` (the patch-embedding conv, also named ``proj``, is not targeted);
* the text encoder (``text_encoder``): ``resblocks.k.attn.out_proj``, ``resblocks.k.mlp.c_fc``,
  ``resblocks.k.mlp.c_proj`` and the fused q/k/v projection. That projection is a raw
  ``in_proj_weight`` parameter, not an ``nn.Linear``, so it goes through peft's
  ``target_parameters`` (a parametrisation adding ``B @ A`` to the weight; peft >= 0.17; peft
  gives it no dropout, so ``lora_dropout`` applies to the module targets only).

Then every parameter of those towers except the LoRA ``A`` / ``B`` matrices is frozen. Neck,
fusion encoder, decoder, heads and geometry encoder stay trainable (the usual LoRA recipe for
detectors). Pass ``towers=dict(backbone=..., text_encoder=None)`` to adapt one tower only.

State-dict names: peft renames wrapped weights (``attn.qkv.weight`` ->
``attn.qkv.base_layer.weight``; the text attention becomes ``attn.base_layer.*``). A
load-state-dict pre-hook maps plain names to the wrapped ones, so a converted official checkpoint
(``load_from``) still fills the base weights. A LoRA checkpoint (base + adapters) round-trips
unchanged.
"""
import copy
import warnings
from typing import Dict, Optional

import torch.nn as nn

# Regexes (peft full-match) per tower: attention and MLP projections of every block.
DEFAULT_LORA_TOWERS = dict(
    backbone=dict(target_modules=r'.*blocks\.\d+\.(attn\.(qkv|proj)|mlp\.(fc1|fc2))'),
    text_encoder=dict(
        target_modules=r'.*resblocks\.\d+\.(attn\.out_proj|mlp\.(c_fc|c_proj))',
        target_parameters=['in_proj_weight']),
)


def _plain_name(key: str) -> str:
    return key.replace('.base_layer.', '.').replace('base_layer.', '')


def _make_load_pre_hook(tower: nn.Module):
    """Pre-hook renaming plain (pre-LoRA) keys to the peft-wrapped names of ``tower``."""
    wrapped = {}
    for key in tower.state_dict().keys():
        plain = _plain_name(key)
        if plain != key:
            wrapped[plain] = key

    def hook(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
             error_msgs):
        for plain, key in wrapped.items():
            src, dst = prefix + plain, prefix + key
            if src in state_dict and dst not in state_dict:
                state_dict[dst] = state_dict.pop(src)

    return hook


def is_lora_param(name: str) -> bool:
    return 'lora_' in name


def apply_lora(model: nn.Module,
               r: int = 16,
               lora_alpha: int = 32,
               lora_dropout: float = 0.0,
               towers: Optional[Dict[str, Optional[dict]]] = None,
               freeze_base: bool = True,
               adapter_name: str = 'default') -> nn.Module:
    """Inject LoRA adapters into ``model``'s towers (in place) and freeze their base weights.

    Args:
        model (nn.Module): the detector (``SAM3``) or any module with the named children.
        r, lora_alpha, lora_dropout: ``peft.LoraConfig`` values (scaling ``lora_alpha / r``).
        towers (dict): child name -> ``dict(target_modules=..., target_parameters=...)`` (peft
            ``LoraConfig`` fields; extra keys are passed through). Entries are merged over
            :data:`DEFAULT_LORA_TOWERS`; a ``None`` value skips that tower.
        freeze_base (bool): set ``requires_grad=False`` on every non-LoRA parameter of the
            adapted towers. Default: True.
        adapter_name (str): peft adapter name. Default: ``'default'``.

    Returns:
        nn.Module: ``model``.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('LoRA fine-tuning needs `peft` (pip install peft>=0.17)') from exc

    tower_cfgs = copy.deepcopy(DEFAULT_LORA_TOWERS)
    for name, cfg in (towers or {}).items():
        if cfg is None:
            tower_cfgs[name] = None
        else:
            tower_cfgs[name] = {**(tower_cfgs.get(name) or {}), **dict(cfg)}
    children = dict(model.named_children())
    for name, cfg in tower_cfgs.items():
        if cfg is None:
            continue
        if name not in children:
            raise KeyError(f'apply_lora: {type(model).__name__} has no child {name!r} '
                           f'(children: {sorted(children)})')
        tower = children[name]
        cfg = dict(cfg)
        if isinstance(cfg.get('target_parameters'), (list, tuple)):
            cfg['target_parameters'] = list(cfg['target_parameters'])
        if isinstance(cfg.get('target_modules'), (list, tuple)):
            cfg['target_modules'] = list(cfg['target_modules'])
        passes = [cfg]
        if lora_dropout and cfg.get('target_parameters'):
            # peft's ParamWrapper (raw-parameter LoRA) has no dropout: module targets get the
            # dropout in a first pass, the parameters none in a second (same adapter name).
            params = cfg.pop('target_parameters')
            passes = [cfg, dict(target_modules=[], target_parameters=params, _dropout=0.0)]
        for i, pass_cfg in enumerate(passes):
            pass_cfg = dict(pass_cfg)
            dropout = pass_cfg.pop('_dropout', lora_dropout)
            lora_cfg = LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=dropout,
                                  bias='none', **pass_cfg)
            with warnings.catch_warnings():
                if i:  # the second pass on purpose adds to the same tower
                    warnings.filterwarnings('ignore', message='Already found a `peft_config`')
                inject_adapter_in_model(lora_cfg, tower, adapter_name=adapter_name)
        tower._register_load_state_dict_pre_hook(_make_load_pre_hook(tower))
        if freeze_base:
            for pname, param in tower.named_parameters():
                param.requires_grad_(is_lora_param(pname))
        n_lora = sum(p.numel() for n, p in tower.named_parameters() if is_lora_param(n))
        if n_lora == 0:
            raise ValueError(f'apply_lora: no module of {name!r} matched {cfg}')
    return model


def lora_state_dict(model: nn.Module) -> dict:
    """Only the LoRA adapter tensors of ``model`` (small; for sharing adapters)."""
    return {k: v for k, v in model.state_dict().items() if is_lora_param(k)}
