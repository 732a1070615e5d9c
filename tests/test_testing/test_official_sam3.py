"""mmsam3.testing.official_sam3: importing mmsam3 (or the harness) never imports Meta's sam3,
and only the harness names it."""
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_import_mmsam3_does_not_import_sam3():
    code = ('import sys; import mmsam3, mmsam3.testing.official_sam3, '
            'mmsam3.testing.golden_outputs; '
            "print(sorted(m for m in sys.modules if m == 'sam3' or m.startswith('sam3.')))")
    out = subprocess.run([sys.executable, '-c', code], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == '[]'


def test_only_the_harness_imports_sam3():
    pattern = re.compile(r'^\s*(import sam3\b|from sam3\b)', re.M)
    offenders = []
    for root, _, files in os.walk(osp.join(REPO, 'mmsam3')):
        for name in files:
            path = osp.join(root, name)
            if name.endswith('.py') and pattern.search(open(path).read()):
                offenders.append(osp.relpath(path, REPO))
    assert offenders == ['mmsam3/testing/official_sam3.py']


@pytest.mark.requires_official
def test_tiny_official_model_builds_and_runs_on_cpu(bpe_path):
    import torch

    from mmsam3.testing import official_sam3

    model = official_sam3.build_official_image_model('tiny', seed=0, bpe_path=bpe_path)
    sizes = official_sam3.official_sizes('tiny')
    size = sizes['img_size']
    out = official_sam3.run_official(model, torch.zeros(1, 3, size, size), 'red apple',
                                     boxes=torch.tensor([[0.5, 0.5, 0.2, 0.2]]))
    num_queries = sizes['num_queries']
    assert out['pred_logits'].shape == (1, num_queries, 1)
    assert out['pred_boxes'].shape == (1, num_queries, 4)
    assert torch.isfinite(out['pred_logits']).all()
