"""backbones of mmsam3."""
from .sam3_vit import SAM3ViT, get_vit_layer_id  # noqa: F401
