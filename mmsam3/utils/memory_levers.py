"""The memory levers of SAM 3 fine-tuning, each as a config edit, and what each one buys.

A lever is ``(name, apply)`` where ``apply(cfg)`` returns an edited copy of a training config, or
None when the config already uses it. :func:`lever_estimates` estimates the config with each
unused lever applied on its own (FSDP on 2 / 4 / 8 GPUs comes from the same tracked step as the
base estimate, see :mod:`mmsam3.utils.train_memory_estimate`), which is what
``tools/train.py --check-memory`` prints when a run would not fit and what the memory table in
``docs/training_memory.md`` is made of.
"""
import copy

__all__ = ['LEVERS', 'lever_estimates', 'format_levers']

STACKS = ('backbone', 'text_encoder', 'geometry_encoder', 'encoder', 'decoder')


def _bf16(cfg):
    ow = cfg.optim_wrapper
    if ow.get('type') == 'AmpOptimWrapper' and ow.get('dtype') in ('bfloat16', 'float16'):
        return None
    cfg = copy.deepcopy(cfg)
    cfg.optim_wrapper.type = 'AmpOptimWrapper'
    cfg.optim_wrapper.dtype = 'bfloat16'
    cfg.optim_wrapper.loss_scale = 'dynamic'
    return cfg


def _mask_head_cfg(cfg):
    head = cfg.model.get('bbox_head') or {}
    return head.get('mask_head') if isinstance(head.get('mask_head'), dict) else None


def _checkpointing(cfg):
    frozen = set(cfg.model.get('frozen_modules', ()) or ())
    todo = [k for k in STACKS if k not in frozen and isinstance(cfg.model.get(k), dict)
            and not cfg.model[k].get('with_cp')]
    mask = _mask_head_cfg(cfg)
    if not todo and (mask is None or mask.get('with_cp')):
        return None
    cfg = copy.deepcopy(cfg)
    for k in todo:
        cfg.model[k].with_cp = True
    if mask is not None:
        cfg.model.bbox_head.mask_head.with_cp = True
    return cfg


def _frozen_towers(cfg):
    if cfg.model.get('lora') or set(cfg.model.get('frozen_modules', ()) or ()) >= {
            'backbone', 'text_encoder'}:
        return None
    cfg = copy.deepcopy(cfg)
    cfg.model.frozen_modules = tuple(
        sorted(set(cfg.model.get('frozen_modules', ()) or ()) | {'backbone', 'text_encoder'}))
    return cfg


def _lora(cfg):
    if cfg.model.get('lora') or 'backbone' in (cfg.model.get('frozen_modules', ()) or ()):
        return None
    cfg = copy.deepcopy(cfg)
    cfg.model.lora = dict(r=16, lora_alpha=32, lora_dropout=0.05)
    return cfg


def _batch_1(cfg):
    if int((cfg.get('train_dataloader') or {}).get('batch_size', 1) or 1) <= 1:
        return None
    cfg = copy.deepcopy(cfg)
    cfg.train_dataloader.batch_size = 1
    return cfg


def _image_672(cfg):
    if int(cfg.model.backbone.get('img_size', 1008)) <= 672:
        return None
    cfg = copy.deepcopy(cfg)
    cfg.model.backbone.img_size = 672
    return cfg


def _no_mask_head(cfg):
    if _mask_head_cfg(cfg) is None:
        return None
    cfg = copy.deepcopy(cfg)
    cfg.model.bbox_head.mask_head = None
    if isinstance(cfg.model.bbox_head.get('criterion'), dict):
        cfg.model.bbox_head.criterion.mask_loss = None
    return cfg


LEVERS = (
    ('bf16 autocast', _bf16),
    ('activation checkpointing in every trainable stack', _checkpointing),
    ('freeze the image and text towers', _frozen_towers),
    ('LoRA (r=16) on the towers', _lora),
    ('batch size 1', _batch_1),
    ('image size 672 (set the pipeline to match)', _image_672),
    ('segmentation head off (boxes only)', _no_mask_head),
)


def lever_estimates(cfg, base, estimate, budget_gib=None):
    """``[(lever, GPUs, peak MiB per GPU)]`` for each lever the config does not use yet.

    Args:
        cfg (Config): the training config.
        base (MemoryEstimate): its estimate (gives the FSDP rows without another run).
        estimate (callable): ``estimate(cfg) -> MemoryEstimate`` for the edited configs.
        budget_gib (float, optional): stop trying single-GPU levers once one fits.
    """
    from .train_memory_estimate import gpu_gib
    rows = []
    for name, apply in LEVERS:
        edited = apply(cfg)
        if edited is None:
            continue
        rows.append((name, 1, estimate(edited).peak_mib))
        if budget_gib is not None and gpu_gib(rows[-1][2]) <= budget_gib:
            break
    for n in (2, 4, 8):
        if n > base.world_size and n in base.fsdp_peaks:
            rows.append((f'FSDP over {n} GPUs', n, base.fsdp_peaks[n]))
    return rows


def format_levers(rows, budget_gib=None):
    from .train_memory_estimate import gpu_gib
    lines = []
    for name, n, peak in rows:
        need = gpu_gib(peak)
        fit = '' if budget_gib is None else ('  fits' if need <= budget_gib else '  too big')
        lines.append(f'  {name:<52} {peak / 1024:7.2f} GiB allocated, '
                     f'{need:6.2f} GiB per GPU{fit}')
    return '\n'.join(lines)
