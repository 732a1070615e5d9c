"""Plain multi-layer perceptron with SAM 3's parameter names (``layers.{i}``, ``out_norm``)."""
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

__all__ = ['SAM3MLP']


@MODELS.register_module()
class SAM3MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU (and dropout) between them.

    Args:
        input_dim (int): Input channels.
        hidden_dim (int): Channels of every hidden layer.
        output_dim (int): Output channels.
        num_layers (int): Number of Linear layers (``layers.0`` ... ``layers.{n-1}``).
        dropout (float): Dropout after each hidden ReLU.
        residual (bool): Add the input to the output (needs ``input_dim == output_dim``).
        out_norm (bool): Apply ``out_norm`` = LayerNorm(output_dim) last (after the residual).

    Forward:
        x ``(..., input_dim)`` -> ``(..., output_dim)``.
    """

    def __init__(self,
                 input_dim: int,
                 hidden_dim: int,
                 output_dim: int,
                 num_layers: int,
                 dropout: float = 0.0,
                 residual: bool = False,
                 out_norm: bool = False):
        super().__init__()
        if residual and input_dim != output_dim:
            raise ValueError('residual is only supported if input_dim == output_dim')
        self.num_layers = num_layers
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(dims[i], dims[i + 1]) for i in range(num_layers))
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.residual = residual
        self.out_norm = nn.LayerNorm(output_dim) if out_norm else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        identity = x
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < self.num_layers - 1:
                x = self.drop(F.relu(x))
        if self.residual:
            x = x + identity
        return self.out_norm(x)
