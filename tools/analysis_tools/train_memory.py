"""Peak memory of one SAM 3 training step for a config (model + optimizer wrapper as configured).

    python tools/analysis_tools/train_memory.py configs/sam3/sam3_vit-l_full-ft_1xb1-1k_rf100-vl.py
    python tools/analysis_tools/train_memory.py configs/sam3/sam3_vit-l_lora_1xb1-1k_coco.py --size tiny
    python tools/analysis_tools/train_memory.py CONFIG --num-prompts 10 --cfg-options model.lora.r=8

Builds the model and the optim wrapper from the config, runs ``model.train_step`` once at batch
1 on a synthetic image of the config's input size (``model.backbone.img_size``) with
``--num-prompts`` text prompts (one box, plus a mask when the model has a mask head, per prompt),
so forward, backward and the optimizer step (AdamW state allocation included) are all counted.

Reported peak: on CUDA ``torch.cuda.max_memory_allocated`` (total and above the pre-step
allocation, i.e. weights); on CPU the process's peak resident set (Linux ``VmHWM``, reset
through ``/proc/self/clear_refs`` before the model is built, so what an earlier step or import
touched does not hide the step's own peak; ``resource.getrusage`` where that is unavailable).
``--size tiny`` swaps in the sizes of ``configs/_base_/models/sam3_tiny.py`` (the smoke-test
size). On CPU an ``AmpOptimWrapper`` is replaced by ``OptimWrapper`` (AMP needs CUDA), with a note.
"""
import argparse
import os
import os.path as osp
import resource
import sys
import time

import numpy as np
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

TINY_MODEL = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_tiny.py')
FULL_MODEL = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_vit-l.py')
DEFAULT_BPE = osp.join(REPO, '..', 'shared', 'data', 'bpe_simple_vocab_16e6.txt.gz')
PROMPTS = ('red apple', 'dog', 'car', 'person', 'tree', 'window', 'shoe', 'cat')


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Peak memory of one SAM 3 training step')
    parser.add_argument('config')
    parser.add_argument('--size', choices=('tiny', 'full'), default='full',
                        help='full: the config as is; tiny: sam3_tiny sizes (smoke test)')
    parser.add_argument('--device', default=None, help='default: cuda when available, else cpu')
    parser.add_argument('--num-prompts', type=int, default=2)
    parser.add_argument('--bpe-path', default=None,
                        help='CLIP BPE file when the config path does not exist')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, as in tools/train.py')
    return parser.parse_args(argv)


def load_config(path, size='full', cfg_options=None, bpe_path=None):
    import mmsam3  # noqa: F401
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    cfg = Config.fromfile(path)
    if size == 'tiny':
        apply_tiny_sizes(cfg.model)
    if cfg_options:
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


def synthetic_batch(size, num_prompts, with_masks):
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    rng = np.random.default_rng(0)
    texts = [PROMPTS[i % len(PROMPTS)] + ('' if i < len(PROMPTS) else f' {i}')
             for i in range(num_prompts)]
    boxes, masks = [], np.zeros((num_prompts, size, size), np.uint8)
    for i in range(num_prompts):
        x0, y0 = rng.integers(0, size // 2, 2)
        w, h = rng.integers(size // 8, size // 2, 2)
        boxes.append([x0, y0, x0 + w, y0 + h])
        masks[i, y0:y0 + h, x0:x0 + w] = 1
    sample = DetDataSample(metainfo=dict(
        texts=texts, prompt_labels=list(range(num_prompts)), img_shape=(size, size),
        ori_shape=(size, size), pad_shape=(size, size), batch_input_shape=(size, size),
        scale_factor=(1.0, 1.0)))
    gt = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                      labels=torch.arange(num_prompts))
    if with_masks:
        gt.masks = BitmapMasks(masks, size, size)
    sample.gt_instances = gt
    img = torch.from_numpy(rng.integers(0, 256, (3, size, size), dtype=np.uint8))
    return dict(inputs=[img], data_samples=[sample])


def _peak_rss_mb():
    from mmsam3.utils import proc_status_mib
    peak = proc_status_mib('VmHWM')
    if peak is not None:
        return peak
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure(cfg, device=None, num_prompts=2):
    """One training step; returns a dict of sizes (MiB) and counts."""
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper
    device = device or ('cuda' if torch.cuda.is_available() else 'cpu')
    notes = []
    ow_cfg = cfg.optim_wrapper.copy()
    if not str(device).startswith('cuda') and ow_cfg.get('type') == 'AmpOptimWrapper':
        ow_cfg.type = 'OptimWrapper'
        for key in ('dtype', 'loss_scale'):
            ow_cfg.pop(key, None)
        notes.append('AmpOptimWrapper -> OptimWrapper on CPU (AMP needs CUDA)')
    from mmsam3.utils import proc_status_mib, reset_peak_rss
    resettable = reset_peak_rss()
    rss0 = proc_status_mib('VmRSS') if resettable else _peak_rss_mb()
    model = MODELS.build(cfg.model).to(device)
    model.train()
    wrapper = build_optim_wrapper(model, ow_cfg)
    size = int(cfg.model.backbone.get('img_size', 1008))
    data = synthetic_batch(size, num_prompts, model.bbox_head.with_masks)
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
                  params_m=params / 1e6, trainable_m=trainable / 1e6,
                  loss=float(torch.as_tensor(log_vars['loss']).detach()), step_seconds=seconds,
                  notes=notes)
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
    lines = [f"device {r['device']}, input {r['input_size']}x{r['input_size']}, batch 1, "
             f"{r['num_prompts']} prompts",
             f"params {r['params_m']:.2f} M, trainable {r['trainable_m']:.2f} M",
             f"one training step: loss {r['loss']:.4f}, {r['step_seconds']:.2f} s",
             f"peak memory ({r['measure']}): {r['peak_mb']:.1f} MiB "
             f"({r['peak_above_weights_mb']:.1f} MiB above model + optimizer construction)"]
    lines += [f'note: {n}' for n in r['notes']]
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.size, args.cfg_options, args.bpe_path)
    result = measure(cfg, args.device, args.num_prompts)
    print(format_result(result))
    return result


if __name__ == '__main__':
    main()
