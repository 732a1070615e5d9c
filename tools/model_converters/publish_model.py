"""Make a training checkpoint publishable (mmdet's ``publish_model``): weights and meta only.

    python tools/model_converters/publish_model.py work_dirs/x/iter_5000.pth sam3_tiny_shapes.pth
    # -> sam3_tiny_shapes-<first 8 hex digits of its sha256>.pth

Keeps ``--save-keys`` (``meta`` and ``state_dict``) and drops the rest (``optimizer``,
``message_hub``, ``param_schedulers``...), naming each dropped key. From ``meta`` it also drops
``hook_msgs``, which holds the path of the last checkpoint on the training machine. The input is
read with mmsam3's safe loader (a pickle that would run code is refused). The output is hashed in
memory and written atomically (``mmsam3.utils.atomic_open``: a temporary file, then a rename), so
a killed run never leaves a partial file under a ``.pth`` name.
"""
import argparse
import hashlib
import io
import os.path as osp
import sys
from typing import Sequence

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from mmsam3.utils import atomic_open, safe_torch_load  # noqa: E402

DEFAULT_SAVE_KEYS = ('meta', 'state_dict')
PRIVATE_META_KEYS = ('hook_msgs', )


def process_checkpoint(in_file: str, out_file: str,
                       save_keys: Sequence[str] = DEFAULT_SAVE_KEYS) -> str:
    """Write the published checkpoint; returns its final path ``<out stem>-<sha8>.pth``."""
    checkpoint = safe_torch_load(in_file, map_location='cpu')
    if not isinstance(checkpoint, dict) or 'state_dict' not in checkpoint:
        raise ValueError(f'{in_file} is not an mmengine checkpoint (a dict with "state_dict"); '
                         'a bare state dict is already publishable as it is')
    for key in list(checkpoint):
        if key not in save_keys:
            print(f'dropping {key!r} (not in --save-keys {list(save_keys)})')
            checkpoint.pop(key)
    meta = checkpoint.get('meta')
    if isinstance(meta, dict):
        for key in PRIVATE_META_KEYS:
            if meta.pop(key, None) is not None:
                print(f'dropping meta[{key!r}] (paths of the training machine)')

    # The name carries the content's hash, so serialise first, then write under that name.
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    data = buffer.getbuffer()
    stem = out_file[:-4] if out_file.endswith('.pth') else out_file
    final = f'{stem}-{hashlib.sha256(data).hexdigest()[:8]}.pth'
    with atomic_open(final, 'wb') as f:
        f.write(data)
    print(f'The published model is saved at {final}')
    return final


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Process a checkpoint to be published')
    parser.add_argument('in_file', help='input checkpoint')
    parser.add_argument('out_file', help='output name; "-<sha256[:8]>.pth" replaces ".pth"')
    parser.add_argument('--save-keys', nargs='+', default=list(DEFAULT_SAVE_KEYS),
                        help='top-level keys to keep (default: meta state_dict)')
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = parse_args(argv)
    return process_checkpoint(args.in_file, args.out_file, args.save_keys)


if __name__ == '__main__':
    main()
