"""A SAM3-Small student reaches the edge the way the full model does: compressed by
tools/model_converters/compress_sam3.py from its teacher, then exported by
tools/deployment/deploy.py into the three graphs, whose ONNX Runtime outputs match the student in
PyTorch."""
import importlib.util
import json
import os
import os.path as osp

import torch

from deploy_test_utils import REPO, load_tool

TEACHER_CFG = osp.join(REPO, 'configs/sam3_small/retention/sam3-tiny8_168_shapes.py')
STUDENT_CFG = osp.join(REPO, 'configs/sam3_small/retention/sam3-tiny4_126_shapes.py')
DEPLOY_CFG = osp.join(REPO, 'configs/deploy/instance-seg_onnxruntime_static-126x126.py')


def _compress_tool():
    path = osp.join(REPO, 'tools', 'model_converters', 'compress_sam3.py')
    spec = importlib.util.spec_from_file_location('compress_sam3_tool', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_compressed_student_exports_with_onnxruntime_parity(bpe_path, shapes_root, tmp_path):
    import mmsam3  # noqa: F401
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    init_default_scope('mmdet')
    cfg = Config.fromfile(TEACHER_CFG)
    cfg.model.tokenizer.bpe_path = bpe_path
    torch.manual_seed(1)
    teacher = MODELS.build(cfg.model).eval()
    teacher_ckpt, student_ckpt = str(tmp_path / 'teacher.pth'), str(tmp_path / 'student.pth')
    torch.save({'state_dict': teacher.state_dict(), 'meta': {}}, teacher_ckpt)

    _compress_tool().main([TEACHER_CFG, teacher_ckpt, STUDENT_CFG, student_ckpt, '--no-flops',
                           '--bpe-path', bpe_path])
    student = torch.load(student_ckpt, map_location='cpu', weights_only=True)['state_dict']
    blocks = {k.split('.')[2] for k in student if k.startswith('backbone.blocks.')}
    assert len(blocks) == 4  # half the teacher's 8 ViT blocks

    work_dir = str(tmp_path / 'graphs')
    options = [f'model.tokenizer.bpe_path={bpe_path}']
    with torch.no_grad():
        diff = load_tool('deploy').main([
            DEPLOY_CFG, STUDENT_CFG, student_ckpt, shapes_root + 'valid/000000.png',
            '--work-dir', work_dir, '--texts', 'red circle', 'blue square',
            '--cfg-options', *options])
    print('student PyTorch vs ONNX Runtime:', diff)
    assert diff['num'][0] == diff['num'][1] > 0
    assert diff['scores'] <= 1e-4 and diff['boxes'] <= 1e-3
    assert diff.get('mask_pixels', 0.0) <= 1e-3
    # The graphs are the student's: its input size, not the teacher's.
    infos = [f for f in os.listdir(work_dir) if f.endswith('.json')]
    assert infos, 'the deploy tool writes a JSON describing the graphs'
    with open(osp.join(work_dir, infos[0])) as f:
        text = f.read()
    assert json.loads(text) and '126' in text
