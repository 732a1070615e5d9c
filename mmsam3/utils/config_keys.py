"""Refuse ``--cfg-options`` keys that the config does not have (typos such as ``with_cpp``).

mmengine's ``Config.merge_from_dict`` adds any key it is given, so a misspelt option is ignored or
fails later with an unrelated message. :func:`check_cfg_option_keys` raises
:class:`UnknownConfigKeyError` naming the key and the closest existing ones, unless the key is
an argument that the registered class of the enclosing ``type=`` dict accepts (so
``model.lora.r=8`` or ``model.backbone.with_cp=True`` on a config that omits them still work) or
a top-level key the runners read (:data:`RUNNER_KEYS`, e.g. ``runner_type``).
"""
import difflib
import inspect

__all__ = ['UnknownConfigKeyError', 'check_cfg_option_keys']


class UnknownConfigKeyError(KeyError):
    """An override names a key the config does not have."""

    def __str__(self):
        return self.args[0] if self.args else ''


def _accepts(type_name, key):
    """Whether the class registered as ``type_name`` takes ``key`` as a constructor argument."""
    from mmengine.registry import MODELS as ROOT_MODELS
    if not isinstance(type_name, str):
        cls = type_name
    else:
        cls = None
        from mmdet.registry import MODELS, OPTIM_WRAPPERS, OPTIMIZERS
        from mmengine.registry import STRATEGIES
        for registry in (MODELS, OPTIM_WRAPPERS, OPTIMIZERS, STRATEGIES, ROOT_MODELS):
            try:
                cls = registry.get(type_name)
            except Exception:  # a scope prefix the registry does not know
                cls = None
            if cls is not None:
                break
    if cls is None:
        return True  # not a class we can inspect: do not guess
    try:
        params = inspect.signature(cls.__init__ if inspect.isclass(cls) else cls).parameters
    except (TypeError, ValueError):
        return True
    return key in params


# Top-level keys that the runners read although a config may leave them out.
RUNNER_KEYS = ('runner_type', 'strategy', 'work_dir', 'load_from', 'resume', 'auto_scale_lr',
               'model_wrapper_cfg', 'find_unused_parameters', 'randomness', 'compile',
               'experiment_name', 'launcher', 'custom_hooks', 'data_preprocessor')


def check_cfg_option_keys(cfg, options):
    """Raise :class:`UnknownConfigKeyError` for an override key ``cfg`` lacks (see module doc).

    Args:
        cfg (Config): the config before ``merge_from_dict(options)``.
        options (dict): ``{'a.b.c': value}`` as ``DictAction`` parses ``--cfg-options``.
    """
    for full_key in options or {}:
        parts = full_key.split('.')
        if parts[0] not in cfg and parts[0] in RUNNER_KEYS:
            continue
        node, typed = cfg, None
        for depth, part in enumerate(parts):
            if isinstance(node, (list, tuple)) and part.isdigit():
                if int(part) >= len(node):
                    raise UnknownConfigKeyError(
                        f'--cfg-options {full_key}: {".".join(parts[:depth])} has only '
                        f'{len(node)} entries')
                node = node[int(part)]
                continue
            if not hasattr(node, 'keys'):
                break  # overriding inside a value the config does not structure
            if 'type' in node:
                typed = node
            if part in node:
                node = node[part]
                continue
            if typed is node and _accepts(node['type'], part):
                break
            where = '.'.join(parts[:depth]) or 'the config'
            close = difflib.get_close_matches(part, [str(k) for k in node.keys()], n=3)
            hint = f' Did you mean {", ".join(close)}?' if close else ''
            raise UnknownConfigKeyError(
                f'--cfg-options {full_key}: {where} has no key {part!r}.{hint} '
                f'(keys there: {", ".join(sorted(str(k) for k in node.keys()))})')
