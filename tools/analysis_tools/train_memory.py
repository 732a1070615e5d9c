"""Peak memory of one SAM 3 training step for a config: estimated (default) or measured.

    python tools/analysis_tools/train_memory.py configs/sam3/sam3_vit-l_full-ft_1xb1-1k_rf100-vl.py
    python tools/analysis_tools/train_memory.py CONFIG --world-size 4        # FSDP over 4 GPUs
    python tools/analysis_tools/train_memory.py CONFIG --levers              # what each lever buys
    python tools/analysis_tools/train_memory.py CONFIG --measure --size tiny # a real step
    python tools/analysis_tools/train_memory.py CONFIG --compare --size tiny # estimate vs measured

**Estimate** (default; no GPU needed, nothing of the model's size allocated): one training step
of the config as it is (precision, ``with_cp``, frozen modules, LoRA, the dataloader's batch size
per GPU, ``model.backbone.img_size``, mask head or not) traced on fake tensors with torch's
``MemTracker`` (:mod:`mmsam3.utils.train_memory_estimate`): parameters, gradients, optimizer
state, activations and temporaries at the peak, each top-level module's peak, and the peak per GPU
on 1 GPU and with FSDP on 2 / 4 / 8 (``--world-size N`` for another N). ``--target cuda`` (the
default) counts storages as the CUDA caching allocator does; the GPU total adds allocator
fragmentation and the CUDA context, which no tensor trace sees.

**Measure** (``--measure``): builds the model and the optim wrapper and runs ``model.train_step``
once on a synthetic batch. Peak: on CUDA ``torch.cuda.max_memory_allocated`` (total and above
the pre-step allocation); on CPU the process's peak resident set (Linux ``VmHWM``, reset through
``/proc/self/clear_refs`` before the model is built; ``resource.getrusage`` where that is
unavailable). On CPU an ``AmpOptimWrapper`` is replaced by ``OptimWrapper`` (AMP needs CUDA).

**Compare** (``--compare``): the estimate of the CPU step (fp32, ``--target cpu``) and the measured
CPU step of the same config, after a warm-up step whose memory is handed back to the system, and
their ratio.

``--size tiny`` swaps in the sizes of ``configs/_base_/models/sam3_tiny.py`` (the smoke-test size).
``--batch-size`` sets the images per GPU; ``--global-batch-size`` the images per step over all
``--world-size`` GPUs (it must divide).
"""
import argparse
import os
import os.path as osp
import resource
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

TINY_MODEL = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_tiny.py')
FULL_MODEL = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_vit-l.py')
DEFAULT_BPE = osp.join(REPO, '..', 'shared', 'data', 'bpe_simple_vocab_16e6.txt.gz')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Peak memory of one SAM 3 training step')
    parser.add_argument('config')
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument('--measure', action='store_true', help='run a real step and measure it')
    mode.add_argument('--compare', action='store_true',
                      help='estimate and measure the CPU step; print their ratio')
    parser.add_argument('--size', choices=('tiny', 'full'), default='full',
                        help='full: the config as is; tiny: sam3_tiny sizes (smoke test)')
    parser.add_argument('--device', default=None, help='--measure: default cuda when available')
    parser.add_argument('--target', choices=('cuda', 'cpu'), default='cuda',
                        help='estimate: the device the step is meant for')
    parser.add_argument('--world-size', type=int, default=1,
                        help='estimate: GPUs the model is sharded over with FSDP')
    parser.add_argument('--batch-size', type=int, default=None, help='images per GPU')
    parser.add_argument('--global-batch-size', type=int, default=None,
                        help='images per step over all --world-size GPUs')
    parser.add_argument('--levers', action='store_true',
                        help='estimate: also what each unused memory lever would give')
    parser.add_argument('--num-prompts', type=int, default=2)
    parser.add_argument('--bpe-path', default=None,
                        help='CLIP BPE file when the config path does not exist')
    parser.add_argument('--json', default=None, help='also write the result to this file')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as in tools/train.py')
    args = parser.parse_args(argv)
    args.batch_size = per_gpu_batch(args.batch_size, args.global_batch_size, args.world_size)
    return args


def per_gpu_batch(batch_size, global_batch_size, world_size):
    """Images per GPU from ``--batch-size`` or ``--global-batch-size`` over ``world_size``."""
    if world_size < 1:
        raise SystemExit(f'--world-size must be >= 1, got {world_size}')
    if global_batch_size is None:
        return batch_size
    if batch_size is not None:
        raise SystemExit('give --batch-size (per GPU) or --global-batch-size, not both')
    if global_batch_size % world_size:
        raise SystemExit(
            f'--global-batch-size {global_batch_size} is not divisible by --world-size '
            f'{world_size}: every GPU takes the same number of images per step (FSDP and DDP '
            f'average gradients over equal shards); use a multiple of {world_size}, e.g. '
            f'{(global_batch_size // world_size + 1) * world_size}, or '
            'optim_wrapper.accumulative_counts for the rest')
    return global_batch_size // world_size


def load_config(path, size='full', cfg_options=None, bpe_path=None):
    import mmsam3  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(path)
    if size == 'tiny':
        apply_tiny_sizes(cfg.model)
    if cfg_options:
        from mmsam3.utils.config_keys import check_cfg_option_keys
        check_cfg_option_keys(cfg, cfg_options)
        cfg.merge_from_dict(cfg_options)
    bpe = cfg.model.tokenizer.get('bpe_path')
    if bpe_path or not (bpe and osp.isfile(bpe)):
        cfg.model.tokenizer.bpe_path = bpe_path or os.environ.get('MMSAM3_BPE_PATH', DEFAULT_BPE)
    return cfg


def _size_diff(tiny, full):
    """The entries of ``tiny`` that differ from ``full`` (nested dicts compared key by key)."""
    diff = {}
    for key, value in tiny.items():
        ref = full.get(key) if isinstance(full, dict) else None
        if isinstance(value, dict) and isinstance(ref, dict):
            sub = _size_diff(value, ref)
            if sub:
                diff[key] = sub
        elif value != ref:
            diff[key] = value
    return diff


def tiny_sizes():
    """What ``configs/_base_/models/sam3_tiny.py`` changes in the full model (its sizes)."""
    from mmengine.config import Config
    return _size_diff(Config.fromfile(TINY_MODEL).model.to_dict(),
                      Config.fromfile(FULL_MODEL).model.to_dict())


def _merge_sizes(model_cfg, sizes):
    """Apply ``sizes`` over an experiment's model dict; a component the experiment disables
    (``mask_head=None``) stays disabled."""
    for key, value in sizes.items():
        if key in model_cfg and model_cfg[key] is None:
            continue
        if isinstance(value, dict) and isinstance(model_cfg.get(key), dict):
            _merge_sizes(model_cfg[key], value)
        else:
            model_cfg[key] = value


def apply_tiny_sizes(model_cfg):
    """Give an experiment's model dict the sizes of ``sam3_tiny.py`` (in place)."""
    _merge_sizes(model_cfg, tiny_sizes())
    return model_cfg


def _peak_rss_mb():
    from mmsam3.utils import proc_status_mib
    peak = proc_status_mib('VmHWM')
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def _release_freed_memory():
    """Hand memory that Python and glibc keep after ``free`` back to the system, so that the
    next resident-set reading starts from what is really in use."""
    import ctypes
    import gc
    gc.collect()
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _fixed_mmap_threshold(nbytes=1 << 16):
    """glibc serves blocks above ``nbytes`` with their own mappings and unmaps them when freed.
    Its default threshold grows after each large free, so freed activations stay resident and a
    resident-set peak would count allocator fragmentation, not the step's tensors."""
    import ctypes
    try:
        return ctypes.CDLL('libc.so.6').mallopt(-3, nbytes) == 1  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        return False


def _cpu_optim_cfg(cfg, notes):
    ow_cfg = cfg.optim_wrapper.copy()
    if ow_cfg.get('type') == 'AmpOptimWrapper':
        ow_cfg.type = 'OptimWrapper'
        for key in ('dtype', 'loss_scale'):
            ow_cfg.pop(key, None)
        notes.append('AmpOptimWrapper -> OptimWrapper on CPU (AMP needs CUDA)')
    return ow_cfg


def _train_step(cfg, device, ow_cfg, num_prompts, batch_size):
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper

    from mmsam3.utils.synthetic_train_batch import synthetic_train_batch
    model = MODELS.build(cfg.model).to(device)
    model.train()
    wrapper = build_optim_wrapper(model, ow_cfg)
    size = int(cfg.model.backbone.get('img_size', 1008))
    data = synthetic_train_batch(size, num_prompts, model.bbox_head.with_masks, batch_size)
    return model, wrapper, data, size


def measure(cfg, device=None, num_prompts=2, batch_size=None, warmup=False):
    """One training step; returns a dict of sizes (MiB) and counts.

    ``warmup``: run one step of the same config first and free it, so that code and allocator
    pages the first step touches do not count as the measured step's memory (CPU).
    """
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    batch_size = batch_size or int((cfg.get('train_dataloader') or {}).get('batch_size', 1) or 1)
    notes = []
    ow_cfg = cfg.optim_wrapper.copy()
    if not str(device).startswith('cuda'):
        ow_cfg = _cpu_optim_cfg(cfg, notes)
    if not str(device).startswith('cuda') and _fixed_mmap_threshold():
        notes.append('glibc mmap threshold fixed at 64 KiB (freed tensors leave the RSS)')
    tensor_peak = None
    if warmup:
        from torch.distributed._tools.mem_tracker import MemTracker

        from mmsam3.utils.train_memory_estimate import skip_grad_hooks_of_frozen, snapshot_mib
        model, wrapper, data, _ = _train_step(cfg, device, ow_cfg, num_prompts, batch_size)
        tracker = MemTracker()
        tracker.track_external(model, wrapper.optimizer)
        skip_grad_hooks_of_frozen(tracker, model)
        with tracker:
            model.train_step(data, optim_wrapper=wrapper)
        tensor_peak = sum(
            sum(snapshot_mib(snap).values())
            for snap in tracker.get_tracker_snapshot('peak').values())
        del model, wrapper, data, tracker
        _release_freed_memory()
    from mmsam3.utils import proc_status_mib, reset_peak_rss
    resettable = reset_peak_rss()
    rss0 = proc_status_mib('VmRSS') if resettable else _peak_rss_mb()
    model, wrapper, data, size = _train_step(cfg, device, ow_cfg, num_prompts, batch_size)
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    base_alloc = torch.cuda.memory_allocated() if str(device).startswith('cuda') else 0
    if resettable:
        reset_peak_rss()
        rss1 = proc_status_mib('VmRSS')
    else:
        rss1 = _peak_rss_mb()
    t0 = time.perf_counter()
    log_vars = model.train_step(data, optim_wrapper=wrapper)
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    result = dict(device=str(device), input_size=size, num_prompts=num_prompts,
                  batch_size=batch_size, params_m=params / 1e6, trainable_m=trainable / 1e6,
                  loss=float(torch.as_tensor(log_vars['loss']).detach()), step_seconds=seconds,
                  notes=notes, tensor_peak_mb=tensor_peak)
    if str(device).startswith('cuda'):
        peak = torch.cuda.max_memory_allocated()
        result.update(peak_mb=peak / 2**20, peak_above_weights_mb=(peak - base_alloc) / 2**20,
                      measure='torch.cuda.max_memory_allocated')
    else:
        rss2 = _peak_rss_mb()
        result.update(peak_mb=rss2 - rss0, peak_above_weights_mb=rss2 - rss1,
                      peak_rss_mb=rss2,
                      measure='peak RSS (VmHWM, reset before the step) above the RSS before '
                      'the model' if resettable else 'peak RSS growth (resource.getrusage)')
    return result


def format_result(r):
    lines = [f"device {r['device']}, input {r['input_size']}x{r['input_size']}, batch "
             f"{r['batch_size']}, {r['num_prompts']} prompts",
             f"params {r['params_m']:.2f} M, trainable {r['trainable_m']:.2f} M",
             f"one training step: loss {r['loss']:.4f}, {r['step_seconds']:.2f} s",
             f"peak memory ({r['measure']}): {r['peak_mb']:.1f} MiB "
             f"({r['peak_above_weights_mb']:.1f} MiB above model + optimizer construction)"]
    if r.get('tensor_peak_mb') is not None:
        lines.append(f"peak of live tensors in the warm-up step (MemTracker on real tensors): "
                     f"{r['tensor_peak_mb']:.1f} MiB")
    lines += [f'note: {n}' for n in r['notes']]
    return '\n'.join(lines)


CANNOT_SEE = (
    'not seen by a trace of tensors: CUDA context and cuBLAS/cuDNN workspaces (added as '
    '{ctx:.2f} GiB) and caching-allocator fragmentation (added as {frag:.0%}); '
    'CUDA autocast is stood in for by CPU autocast (same matmul / conv precision)')


def format_estimate(e):
    from mmsam3.utils.train_memory_estimate import CUDA_CONTEXT_GIB, FRAGMENTATION
    gpus = f', FSDP over {e.world_size} GPUs' if e.world_size > 1 else ''
    lines = [
        f'ESTIMATE (fake tensors, nothing allocated) for {e.target}{gpus}: input '
        f'{e.input_size}x{e.input_size}, batch {e.batch_size} per GPU, {e.num_prompts} prompts '
        f'per image, {e.precision}',
        f'params {e.params_m:.2f} M, trainable {e.trainable_m:.2f} M; frozen: '
        f'{", ".join(e.frozen) or "-"}; LoRA: {"yes" if e.lora else "no"}; mask head: '
        f'{"yes" if e.with_masks else "no"}; activation checkpointing: '
        f'{", ".join(e.checkpointing) or "-"}',
        f'{"category at the peak":<28}{"MiB per GPU":>12}']
    for k, v in e.breakdown.items():
        lines.append(f'  {k:<26}{v:12.1f}')
    lines.append(f'  {"peak (allocated)":<26}{e.peak_mib:12.1f}')
    lines.append(f'{"module":<28}{"own peak MiB":>12}{"params M":>10}{"trainable M":>13}')
    for name, peak, p, t in e.modules:
        lines.append(f'  {name:<26}{peak:12.1f}{p:10.2f}{t:13.2f}')
    from mmsam3.utils.train_memory_estimate import gpu_gib
    lines.append('peak per GPU by number of GPUs (FSDP): ' + ', '.join(
        f'{n}: {v / 1024:.2f} GiB allocated / {gpu_gib(v):.2f} GiB needed'
        for n, v in sorted(e.fsdp_peaks.items())))
    lines.append(f'attention kernels: {e.attention_kernels or "-"}'
                 + (f'; attention with dropout run fused as a GPU does (CPU math path '
                    f'would keep {e.attention_math_mib:.0f} MiB of score matrices)'
                    if e.attention_math_mib else ''))
    if e.target == 'cuda':
        lines.append('note: ' + CANNOT_SEE.format(ctx=CUDA_CONTEXT_GIB, frag=FRAGMENTATION))
    lines.append(f'estimated on CPU in {e.seconds:.1f} s')
    return '\n'.join(lines)


def estimate(cfg, world_size=1, num_prompts=2, batch_size=None, target='cuda'):
    from mmsam3.utils.train_memory_estimate import estimate_train_memory
    return estimate_train_memory(cfg, world_size=world_size, num_prompts=num_prompts,
                                 batch_size=batch_size, target=target)


def compare(cfg, num_prompts=2, batch_size=None):
    """Estimate of the CPU step (fp32, as measured) vs the measured CPU step."""
    notes = []
    cpu_cfg = cfg.copy()
    cpu_cfg.optim_wrapper = _cpu_optim_cfg(cfg, notes)
    est = estimate(cpu_cfg, 1, num_prompts, batch_size, target='cpu')
    _release_freed_memory()
    meas = measure(cpu_cfg, 'cpu', num_prompts, batch_size, warmup=True)
    return dict(estimate_mib=est.peak_mib, measured_mib=meas['peak_mb'],
                ratio=est.peak_mib / meas['peak_mb'], tensor_mib=meas['tensor_peak_mb'],
                tensor_ratio=est.peak_mib / meas['tensor_peak_mb'], estimate=est,
                measured=meas, notes=notes)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.size, args.cfg_options, args.bpe_path)
    if args.measure:
        result = measure(cfg, args.device, args.num_prompts, args.batch_size)
        print(format_result(result))
    elif args.compare:
        result = compare(cfg, args.num_prompts, args.batch_size)
        print(format_estimate(result['estimate']))
        print(format_result(result['measured']))
        print(f"estimate / measured (CPU, fp32): {result['estimate_mib']:.1f} / "
              f"{result['measured_mib']:.1f} MiB = {result['ratio']:.3f} (process peak RSS, "
              f"less the baseline); / {result['tensor_mib']:.1f} MiB = "
              f"{result['tensor_ratio']:.3f} (live tensors of the real step)")
    else:
        result = estimate(cfg, args.world_size, args.num_prompts, args.batch_size, args.target)
        print(format_estimate(result))
        if args.levers:
            from mmsam3.utils.memory_levers import format_levers, lever_estimates
            rows = lever_estimates(cfg, result, lambda c: estimate(
                c, 1, args.num_prompts, args.batch_size, args.target))
            print('levers not used by this config, each on its own:')
            print(format_levers(rows))
            result.levers = rows
    if args.json:
        import dataclasses
        import json

        def plain(obj):
            if dataclasses.is_dataclass(obj):
                return dataclasses.asdict(obj)
            return str(obj)
        with open(args.json, 'w') as f:
            json.dump(result if isinstance(result, dict) else dataclasses.asdict(result), f,
                      indent=1, default=plain)
    return result


if __name__ == '__main__':
    main()
