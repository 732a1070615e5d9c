"""SAM 3's simple feature pyramid (ViTDet SimpleFPN) on the single ViT map.

Every level is built from the last backbone map only:

* x4: ConvT 2x2 (C -> C/2), GELU, ConvT 2x2 (C/2 -> C/4)
  (``dconv_2x2_0``, ``gelu``, ``dconv_2x2_1``)
* x2: ConvT 2x2 (C -> C/2) (``dconv_2x2``)
* x1: nothing
* x0.5: max-pool 2x2 (``maxpool_2x2``)

each followed by ``conv_1x1`` (-> ``out_channels``) and ``conv_3x3`` (padding 1), both with bias and
no activation. Parameter names equal the official ``backbone.vision_backbone.convs.*``.
"""
from typing import Sequence, Tuple

from mmdet.registry import MODELS
from mmengine.model import BaseModule
from torch import Tensor, nn

from ..layers.sam_prompt_encoder import LayerNorm2d

__all__ = ['SAM3FPN']


@MODELS.register_module()
class SAM3FPN(BaseModule):
    """Simple FPN of SAM 3.

    Args:
        in_channels (int): Channels of the backbone map. Default: 1024.
        out_channels (int): Channels of every level. Default: 256.
        scale_factors (Sequence[float]): Per level, one of 4, 2, 1, 0.5. Default: (4, 2, 1, 0.5).
        num_dropped_levels (int): How many of the last levels are not returned (the official
            ``scalp``; SAM 3 uses 1, dropping the x0.5 level). Their ``convs.{i}`` modules are
            still built so the official checkpoint loads strictly. Default: 1.
        compute_dropped_levels (bool): Run the dropped levels anyway and discard the result, as
            the official code does (costs time, changes no output). When False (default) they are
            skipped and their parameters get ``requires_grad=False``, so DDP does not need
            ``find_unused_parameters`` for them.
        out_norm (bool): End every level with a LayerNorm over the channels (``convs.{i}.norm``),
            as SAM 1's neck does; SAM 3's necks have none, so Meta's checkpoints need False
            (default). For training from scratch: without it the image embedding grows
            (measured on the shapes data: token norm 2.7 at initialisation, 80-290 after
            training) while the mask decoder's position encoding stays at norm 5.7, so the
            keys' position, the only thing that places a click, is drowned.
        init_cfg (dict | list | None): mmengine init config.

    Forward:
        inputs (tuple[Tensor]): backbone maps; only the last, ``(B, in_channels, H, W)``, is used.

        Returns ``tuple[Tensor]``, highest resolution first: ``(B, out_channels, s*H, s*W)`` for
        each kept scale ``s``. Default: ``4H``, ``2H``, ``H`` (72 -> 288, 144, 72).
    """

    def __init__(self,
                 in_channels: int = 1024,
                 out_channels: int = 256,
                 scale_factors: Sequence[float] = (4.0, 2.0, 1.0, 0.5),
                 num_dropped_levels: int = 1,
                 compute_dropped_levels: bool = False,
                 out_norm: bool = False,
                 init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        scale_factors = tuple(float(s) for s in scale_factors)
        if not 0 <= num_dropped_levels < len(scale_factors):
            raise ValueError(f'num_dropped_levels must be in [0, {len(scale_factors)}), got '
                             f'{num_dropped_levels}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_factors = scale_factors
        self.num_outs = len(scale_factors) - num_dropped_levels
        self.compute_dropped_levels = compute_dropped_levels
        self.out_norm = out_norm

        self.convs = nn.ModuleList([self._make_level(s) for s in scale_factors])
        if not compute_dropped_levels:
            for level in self.convs[self.num_outs:]:
                level.requires_grad_(False)

    def _make_level(self, scale: float) -> nn.Sequential:
        dim = self.in_channels
        level = nn.Sequential()
        if scale == 4.0:
            level.add_module('dconv_2x2_0', nn.ConvTranspose2d(dim, dim // 2, 2, stride=2))
            level.add_module('gelu', nn.GELU())
            level.add_module('dconv_2x2_1', nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2))
            mid = dim // 4
        elif scale == 2.0:
            level.add_module('dconv_2x2', nn.ConvTranspose2d(dim, dim // 2, 2, stride=2))
            mid = dim // 2
        elif scale == 1.0:
            mid = dim
        elif scale == 0.5:
            level.add_module('maxpool_2x2', nn.MaxPool2d(kernel_size=2, stride=2))
            mid = dim
        else:
            raise ValueError(f'SAM3FPN supports scale factors 4, 2, 1, 0.5; got {scale}')
        level.add_module('conv_1x1', nn.Conv2d(mid, self.out_channels, 1))
        level.add_module('conv_3x3', nn.Conv2d(self.out_channels, self.out_channels, 3, padding=1))
        if self.out_norm:
            level.add_module('norm', LayerNorm2d(self.out_channels))
        return level

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        if isinstance(inputs, Tensor):
            inputs = (inputs, )
        x = inputs[-1]
        n = len(self.convs) if self.compute_dropped_levels else self.num_outs
        outs = [self.convs[i](x) for i in range(n)]
        return tuple(outs[:self.num_outs])
