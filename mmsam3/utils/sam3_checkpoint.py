"""Mapping between Meta's SAM 3 checkpoint layout and mmsam3's ``SAM3`` detector.

The official ``sam3.pt`` holds the video model: ``detector.*`` (the image model plus a second neck,
``sam2_convs``, for the tracker) and ``tracker.*``. mmsam3's modules keep the official parameter
names inside each component, so the conversion is a prefix map plus a list of entries the image
model does not use:

* ``*.attn.freqs_cis``: complex RoPE tables; mmsam3 computes RoPE from the token grid.
* ``backbone.vision_backbone.sam2_convs.*`` and ``tracker.*``: video / interactive tracker only.
"""
from collections import OrderedDict

import torch

# (official prefix after `detector.`, mmsam3 prefix); first match wins.
PREFIX_MAP = (
    ('backbone.vision_backbone.trunk.', 'backbone.'),
    ('backbone.vision_backbone.convs.', 'neck.convs.'),
    ('backbone.language_backbone.', 'text_encoder.'),
    ('geometry_encoder.', 'geometry_encoder.'),
    ('transformer.encoder.', 'encoder.'),
    ('transformer.decoder.', 'decoder.'),
    ('dot_prod_scoring.', 'bbox_head.scoring_head.'),
    ('segmentation_head.', 'bbox_head.mask_head.'),
)

# (official key pattern, reason): entries that are dropped on purpose.
DROPPED = (
    ('.attn.freqs_cis', 'complex RoPE cache; recomputed from the token grid with cos/sin'),
    ('backbone.vision_backbone.sam2_convs.', 'tracker neck (video / interactive model only)'),
    ('tracker.', 'video tracker'),
)


def _unwrap(checkpoint):
    if isinstance(checkpoint, dict):
        for key in ('model', 'state_dict'):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                return checkpoint[key]
    return checkpoint


def convert_official_state_dict(checkpoint):
    """Convert an official SAM 3 state dict (``sam3.pt`` layout) to mmsam3's.

    Args:
        checkpoint (dict): the loaded file; a ``model`` / ``state_dict`` wrapper is unwrapped. Keys
            may carry the ``detector.`` prefix (``sam3.pt``) or not (an image model's own
            ``state_dict()``).

    Returns:
        tuple[OrderedDict, dict]: the converted state dict and a report
        ``{'converted': int, 'dropped': {reason: count}, 'unknown': [keys]}``. Unknown keys are not
        converted; callers decide whether that is an error.
    """
    state = _unwrap(checkpoint)
    converted = OrderedDict()
    dropped, unknown = {}, []
    for key, value in state.items():
        reason = next((why for pat, why in DROPPED if pat in key or key.startswith(pat)), None)
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
            continue
        name = key[len('detector.'):] if key.startswith('detector.') else key
        for src, dst in PREFIX_MAP:
            if name.startswith(src):
                if torch.is_tensor(value) and value.is_complex():
                    raise ValueError(f'unexpected complex tensor {key}; mmsam3 holds no complex '
                                     'parameters')
                converted[dst + name[len(src):]] = value
                break
        else:
            unknown.append(key)
    report = dict(converted=len(converted), dropped=dropped, unknown=unknown)
    return converted, report


def format_report(report):
    lines = [f'converted {report["converted"]} tensors']
    for reason, count in sorted(report['dropped'].items()):
        lines.append(f'dropped {count:5d}  {reason}')
    if report['unknown']:
        lines.append(f'unknown {len(report["unknown"])} (not converted): ' +
                     ', '.join(report['unknown'][:10]) +
                     (' ...' if len(report['unknown']) > 10 else ''))
    return '\n'.join(lines)
