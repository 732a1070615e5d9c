"""task_modules of mmsam3."""
from .assigners import *  # noqa: F401,F403
from .interactive_prompt_sampler import InteractivePromptSampler  # noqa: F401
