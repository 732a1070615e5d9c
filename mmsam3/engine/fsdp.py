"""FSDP for SAM 3 through mmengine's ``FlexibleRunner`` + ``FSDPStrategy``: where to shard.

A config turns it on with (see ``configs/sam3/*_fsdp_*.py``)::

    runner_type = 'FlexibleRunner'
    strategy = dict(
        type='FSDPStrategy',
        model_wrapper=dict(auto_wrap_policy=dict(type='sam3_fsdp_wrap_policy'),
                           use_orig_params=True, mixed_precision=dict(param_dtype='bfloat16',
                           reduce_dtype='float32', buffer_dtype='float32')),
        activation_checkpointing=dict(check_fn='sam3_checkpoint_check_fn'),
        state_dict_cfg='full')

Wrap units (each gathered for its forward / backward, sharded otherwise) are the repeated layers
of the big stacks: ViT blocks, text-tower residual blocks and decoder layers; the fusion and
geometry encoders are one unit each (the fusion encoder calls halves of its first layer, which
FSDP would not gather, and both are small); everything else (patch embedding, neck, heads) stays
in the root unit. FSDP gathers a unit's parameters only around its ``forward``.
``use_orig_params=True`` lets one unit hold frozen and trainable (LoRA) parameters.

Both functions are registered in mmengine's ``FUNCTIONS`` registry under the names above, which is
how ``MMFullyShardedDataParallel`` and ``FSDPStrategy`` resolve string entries.
"""
from typing import Tuple

from mmengine.registry import FUNCTIONS
from torch import nn

__all__ = ['sam3_wrap_classes', 'sam3_fsdp_wrap_policy', 'sam3_checkpoint_check_fn',
           'check_fsdp_wrapped', 'check_fsdp_config', 'FSDPConfigError']


class FSDPConfigError(ValueError):
    """A config asks FSDP for something it cannot do with this model."""


def sam3_wrap_classes() -> Tuple[type, ...]:
    """The layer classes FSDP wraps one by one (the repeated blocks of each stack)."""
    from mmsam3.models.language_models.sam3_lite_text_encoder import (_RepMixerBlock,
                                                                     _TransformerLayer)
    from mmsam3.models.language_models.sam3_text_encoder import _ResidualAttentionBlock
    from mmsam3.models.layers.sam3_decoder import SAM3DecoderLayer
    from mmsam3.models.layers.sam3_fusion_encoder import SAM3FusionEncoder
    from mmsam3.models.layers.sam3_geometry_encoder import SAM3GeometryEncoder
    from mmsam3.models.layers.vit_block import SAM3ViTBlock
    return (SAM3ViTBlock, _ResidualAttentionBlock, _TransformerLayer, _RepMixerBlock,
            SAM3FusionEncoder, SAM3GeometryEncoder, SAM3DecoderLayer)


@FUNCTIONS.register_module()
def sam3_fsdp_wrap_policy(module: nn.Module, recurse: bool, nonwrapped_numel: int) -> bool:
    """FSDP auto-wrap policy: descend everywhere, wrap each layer of :func:`sam3_wrap_classes`."""
    if recurse:
        return True
    return isinstance(module, sam3_wrap_classes())


@FUNCTIONS.register_module()
def sam3_checkpoint_check_fn(module: nn.Module) -> bool:
    """Activation checkpointing applied by the strategy: the same layers as the wrap units."""
    return isinstance(module, sam3_wrap_classes())


def check_fsdp_wrapped(model: nn.Module) -> None:
    """Refuse a model that FSDP wrapped as one unit: sharding would then gather all parameters
    at once and save nothing, which is never what the config meant."""
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    units = [m for m in model.modules() if isinstance(m, FSDP)]
    if len(units) <= 1:
        inner = getattr(model, 'module', model)
        raise FSDPConfigError(
            f'FSDP found no layer to wrap in {type(inner).__name__}: the auto_wrap_policy '
            'matched none of its submodules, so the whole model would be one unit (every '
            'parameter gathered at once, no memory saved). Use '
            "model_wrapper.auto_wrap_policy=dict(type='sam3_fsdp_wrap_policy') with a SAM 3 "
            f'model (wrap units: {", ".join(c.__name__ for c in sam3_wrap_classes())}), or '
            'train this model with the DDP configs.')


def check_fsdp_config(cfg, launcher: str = 'none') -> None:
    """Refuse FSDP configs that cannot run, before anything is built (``tools/train.py``)."""
    strategy = cfg.get('strategy') or {}
    if strategy.get('type') != 'FSDPStrategy':
        return
    if cfg.get('runner_type') != 'FlexibleRunner':
        raise FSDPConfigError(
            "strategy=dict(type='FSDPStrategy') needs runner_type='FlexibleRunner' (the "
            f"default Runner ignores strategies); got runner_type={cfg.get('runner_type')!r}")
    if launcher == 'none':
        raise FSDPConfigError(
            'FSDP shards the model over processes: start it with tools/dist_train.sh CONFIG N '
            '(or --launcher pytorch / slurm), not as a single process')
    wrapper = strategy.get('model_wrapper') or {}
    if wrapper.get('auto_wrap_policy') is None:
        raise FSDPConfigError(
            'strategy.model_wrapper.auto_wrap_policy is not set: FSDP would keep the whole model '
            "in one unit. Use auto_wrap_policy=dict(type='sam3_fsdp_wrap_policy') (see "
            'configs/_base_/fsdp_runtime.py)')
    model = cfg.get('model') or {}
    partly_frozen = bool(model.get('frozen_modules')) or bool(model.get('lora'))
    if partly_frozen and not wrapper.get('use_orig_params', True):
        raise FSDPConfigError(
            'frozen_modules / LoRA with use_orig_params=False: FSDP would flatten frozen and '
            'trainable parameters of one unit into one tensor, which it refuses. Set '
            'strategy.model_wrapper.use_orig_params=True')
