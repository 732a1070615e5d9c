"""layers of mmsam3."""
from .rope_2d import RoPE2D, apply_rope_2d, rope_2d_cos_sin  # noqa: F401
from .vit_block import (SAM3ViTAttention, SAM3ViTBlock, SAM3ViTMLP,  # noqa: F401
                        window_partition, window_unpartition)
from .attention import SAM3MultiheadAttention  # noqa: F401
from .checkpoint import maybe_checkpoint  # noqa: F401
from .mlp import SAM3MLP  # noqa: F401
from .position_encoding import (SAM3SinePositionEncoding, encode_box_cxcywh,  # noqa: F401
                                gen_sineembed_for_position, sine_encode_coords)
from .sam3_decoder import SAM3Decoder, SAM3DecoderLayer  # noqa: F401
from .sam3_encoder_layer import SAM3EncoderLayer  # noqa: F401
from .sam3_fusion_encoder import SAM3FusionEncoder  # noqa: F401
from .sam3_geometry_encoder import SAM3GeometryEncoder  # noqa: F401
from .sam_prompt_encoder import (LayerNorm2d, SAMPromptEncoder,  # noqa: F401
                                 SAMRandomPositionEncoding)
from .two_way_transformer import (SAMAttention, SAMMLPBlock, TwoWayAttentionBlock,  # noqa: F401
                                  TwoWayTransformer)
