"""Model utilities (LoRA adapters)."""
from .lora import DEFAULT_LORA_TOWERS, apply_lora, is_lora_param, lora_state_dict

__all__ = ['apply_lora', 'is_lora_param', 'lora_state_dict', 'DEFAULT_LORA_TOWERS']
