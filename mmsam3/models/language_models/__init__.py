"""language_models of mmsam3."""
from .sam3_lite_text_encoder import SAM3LiteTextEncoder  # noqa: F401
from .sam3_text_encoder import SAM3TextEncoder  # noqa: F401
from .sam3_tokenizer import SAM3Tokenizer  # noqa: F401
