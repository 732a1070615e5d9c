"""Runner extensions (hooks, optimizer constructors), registered into mmdet's registries."""
from . import hooks  # noqa: F401
