"""tools/model_converters/compress_sam3.py on tiny configs: report, checkpoint, errors."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS

from mmsam3.testing.random_weights import randomize_parameters
from mmsam3.testing.tiny_model import tiny_model_cfg

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TINY = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_tiny.py')


def _tool():
    spec = importlib.util.spec_from_file_location(
        'compress_sam3', osp.join(REPO, 'tools', 'model_converters', 'compress_sam3.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _write_student_cfg(path):
    with open(path, 'w') as f:
        f.write(f"_base_ = [{TINY!r}]\n"
                "model = dict(backbone=dict(img_size=126, depth=3, global_att_blocks=(1, 2)),\n"
                "             decoder=dict(num_layers=1, num_queries=10))\n"
                "compress_cfg = dict(queries=list(range(5, 15)))\n")


def test_compress_tool_writes_a_strict_student(bpe_path, tmp_path, capsys):
    teacher = MODELS.build(tiny_model_cfg(bpe_path))
    randomize_parameters(teacher, seed=4)
    ckpt = str(tmp_path / 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    student_cfg = str(tmp_path / 'student.py')
    _write_student_cfg(student_cfg)
    out = str(tmp_path / 'student.pth')
    student, plan, flops = _tool().main([TINY, ckpt, student_cfg, out, '--bpe-path', bpe_path])
    text = capsys.readouterr().out
    assert 'ViT blocks 3/4: [0, 1, 3]' in text and 'image-tower GFLOPs' in text
    assert 'input size 168 -> 126' in text
    (t_img, t_prompt), (s_img, s_prompt) = flops
    assert s_img < 0.7 * t_img and s_prompt < t_prompt
    saved = torch.load(out, weights_only=True)
    assert saved['meta']['compression']['queries'] == list(range(5, 15))
    fresh = MODELS.build(tiny_model_cfg(
        bpe_path, backbone=dict(img_size=126, depth=3, global_att_blocks=(1, 2)),
        decoder=dict(num_layers=1, num_queries=10)))
    fresh.load_state_dict(saved['state_dict'], strict=True)
    assert torch.equal(fresh.decoder.query_embed.weight, teacher.decoder.query_embed.weight[5:15])


def test_compress_tool_errors(bpe_path, tmp_path):
    tool = _tool()
    teacher = MODELS.build(tiny_model_cfg(bpe_path, decoder=dict(num_queries=12)))
    ckpt = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict=teacher.state_dict()), ckpt)
    student_cfg = str(tmp_path / 'student.py')
    _write_student_cfg(student_cfg)
    with pytest.raises(SystemExit, match='does not match the teacher config.*query_embed'):
        tool.main([TINY, ckpt, student_cfg, str(tmp_path / 'x.pth'), '--bpe-path', bpe_path,
                   '--no-flops'])
    with pytest.raises(SystemExit, match='--rank-blocks needs --calib-images'):
        good = MODELS.build(tiny_model_cfg(bpe_path))
        torch.save(dict(state_dict=good.state_dict()), ckpt)
        tool.main([TINY, ckpt, student_cfg, str(tmp_path / 'x.pth'), '--bpe-path', bpe_path,
                   '--rank-blocks', '--no-flops'])
    assert not osp.exists(tmp_path / 'x.pth')
