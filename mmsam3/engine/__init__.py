"""Runner extensions (hooks, optimizer constructors / wrappers, schedulers), registered into
mmdet's registries."""
from . import optimizers  # noqa: F401  (before hooks: the health hook uses the safe wrappers)
from . import hooks  # noqa: F401
from . import fsdp  # noqa: F401  (registers the FSDP wrap policy and checkpoint check function)
