"""task_modules of mmsam3."""
from .assigners import *  # noqa: F401,F403
