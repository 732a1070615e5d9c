"""Model utilities: the prompts of a batch, LoRA adapters."""
from .lora import DEFAULT_LORA_TOWERS, apply_lora, is_lora_param, lora_state_dict
from .prompt_batch import PromptBatch

__all__ = ['apply_lora', 'is_lora_param', 'lora_state_dict', 'DEFAULT_LORA_TOWERS', 'PromptBatch']
