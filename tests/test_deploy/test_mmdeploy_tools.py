"""mmdeploy's own tools on SAM 3 (tiny model): the calls its ``tools/deploy.py``,
``tools/test.py`` and ``tools/profiler.py`` make, through ``mmdeploy.apis``.

The tools live in the mmdeploy repository (v1.3.1), not in its wheel, so each test makes the
tool's calls in the tool's order; docs/deployment.md gives the commands themselves.
"""
import os
import os.path as osp
from copy import deepcopy

import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample

from deploy_test_utils import DEPLOY_CFG, MODEL_CFG, REPO, SIZE
from mmsam3.deploy import GRAPH_NAMES, MANIFEST_NAME, DeployedSAM3

TOL = 1e-4


def _configs(tiny_deployment):
    from mmdeploy.utils import load_config
    deploy_cfg, model_cfg = load_config(DEPLOY_CFG, MODEL_CFG)
    model_cfg.merge_from_dict(dict(o.split('=', 1) for o in tiny_deployment.cfg_options))
    return deploy_cfg, model_cfg


def test_deploy_tool_calls_give_three_graphs_matching_pytorch(spawned_pipeline, tiny_deployment,
                                                             shapes_root, tmp_path):
    from mmdeploy.apis import inference_model, torch2onnx, visualize_model
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import get_backend, get_ir_config, get_partition_config, load_config

    from mmsam3.deploy import audit_onnx, read_manifest
    from mmsam3.deploy.tensorrt_engine_builder import trt_profiles
    deploy_cfg, model_cfg = _configs(tiny_deployment)
    img = shapes_root + 'valid/000000.png'
    work_dir = str(tmp_path)
    # tools/deploy.py: torch2onnx in a spawned process (the registration comes from the
    # deploy config's codebase_config.module there), no partition step, to_backend.
    save_file = get_ir_config(deploy_cfg)['save_file']
    torch2onnx(img, work_dir, save_file, DEPLOY_CFG, model_cfg, tiny_deployment.ckpt,
               device='cpu')
    assert get_partition_config(deploy_cfg) is None
    backend = get_backend(deploy_cfg)
    backend_files = to_backend(backend, [osp.join(work_dir, save_file)], work_dir=work_dir,
                               deploy_cfg=deploy_cfg, device='cpu')
    assert backend_files == [osp.join(work_dir, MANIFEST_NAME)]
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.onnx')) == \
        sorted(f'{g}.onnx' for g in GRAPH_NAMES)
    # Ready for a TensorRT build on the device: the op audit passes, and the manifest's
    # profiles are those of the TensorRT config of this size.
    manifest = read_manifest(work_dir)
    trt_cfg = load_config(osp.join(REPO, 'configs/deploy/'
                                   'instance-seg_tensorrt_static-168x168.py'))[0]
    assert {g: e['trt_profile'] for g, e in manifest['graphs'].items()} == trt_profiles(trt_cfg)
    for name in GRAPH_NAMES:
        report = audit_onnx(osp.join(work_dir, f'{name}.onnx'))
        assert report.ok, report.violations
    # tools/deploy.py's last step: the backend model on the image, drawn (the tool runs it in
    # a process of its own for isolation; here in this one, to keep the test short).
    out_file = osp.join(work_dir, f'output_{backend.value}.jpg')
    visualize_model(model_cfg, DEPLOY_CFG, backend_files, img, 'cpu', backend=backend,
                    output_file=out_file, show_result=False)
    assert osp.getsize(out_file) > 0
    # The graphs compute what PyTorch does: two phrases, one with an exemplar box.
    deployed = DeployedSAM3(tiny_deployment.cfg, backend_files)
    x = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    hw = (SIZE, SIZE)
    sample = DetDataSample(metainfo=dict(
        texts=['red circle', 'blue square'], img_shape=hw, ori_shape=hw, batch_input_shape=hw,
        scale_factor=(1.0, 1.0), prompt_boxes=[[[40., 50., 120., 130.]], None],
        prompt_box_labels=[[1], None]))
    with torch.no_grad():
        ref = tiny_deployment.model._forward(x, [sample])
        got = deployed._forward(x, [sample])
    diffs = {k: float(((ref[k][-1:] if k in ('logits', 'boxes', 'presence') else ref[k]) -
                       got[k]).abs().max())
             for k in ('logits', 'boxes', 'presence', 'pred_masks', 'semantic_seg')}
    print('mmdeploy pipeline, PyTorch vs ONNX Runtime:', diffs)
    assert all(v <= TOL for v in diffs.values()), diffs
    # mmdeploy.apis.inference_model: DetDataSamples with the deploy config's phrases.
    results = inference_model(model_cfg, DEPLOY_CFG, backend_files, img, 'cpu')
    assert len(results) == 1 and isinstance(results[0], DetDataSample)
    inst = results[0].pred_instances
    assert len(inst) > 0 and set(inst.label_names) <= {'object'}
    assert inst.masks.shape[-2:] == (SIZE, SIZE)


def test_test_tool_calls_give_the_ap_of_tools_test(tiny_deployment, shapes_root, tmp_path):
    """mmdeploy's tools/test.py on the graphs: the COCO AP of our tools/test.py in PyTorch."""
    import importlib.util

    import mmengine
    from mmdeploy.apis import build_task_processor
    from mmdet.evaluation import DumpDetResults
    spec = importlib.util.spec_from_file_location('mmsam3_tools_test',
                                                  osp.join(REPO, 'tools', 'test.py'))
    torch_test = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(torch_test)
    ann = shapes_root + 'valid/_annotations.coco.json'
    data = {'test_dataloader.dataset.data_root': shapes_root, 'test_evaluator.0.ann_file': ann,
            'test_evaluator.1.ann_file': ann, 'test_dataloader.num_workers': 0,
            'test_dataloader.persistent_workers': False}
    options = [f'{k}={v}' for k, v in data.items()] + list(tiny_deployment.cfg_options)
    ref_pkl, dep_pkl = str(tmp_path / 'torch.pkl'), str(tmp_path / 'deployed.pkl')
    ref = torch_test.main([MODEL_CFG, tiny_deployment.ckpt, '--work-dir',
                           str(tmp_path / 'torch'), '--out', ref_pkl, '--cfg-options', *options])
    deploy_cfg, model_cfg = _configs(tiny_deployment)
    model_cfg.merge_from_dict(data)
    # mmdeploy tools/test.py's main(), its default --batch-size 1.
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    loader = deepcopy(model_cfg['test_dataloader'])
    loader['batch_size'] = 1
    loader['dataset'] = task.build_dataset(loader['dataset'])
    dataloader = task.build_dataloader(loader)
    model = task.build_backend_model(
        [osp.join(tiny_deployment.work_dir, MANIFEST_NAME)],
        data_preprocessor_updater=task.update_data_preprocessor)
    destroy_model = model.destroy
    runner = task.build_test_runner(model, str(tmp_path / 'mmdeploy'), log_file=None,
                                    show=False, show_dir=None, wait_time=0, interval=1,
                                    dataloader=dataloader)
    runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=dep_pkl))
    got = runner.test()
    destroy_model()
    keys = ('coco/bbox_mAP', 'coco/bbox_mAP_50', 'coco/segm_mAP', 'coco/segm_mAP_50')
    print('AP tools/test.py vs mmdeploy tools/test.py:', {k: (ref[k], got[k]) for k in keys})
    for key in keys:
        assert abs(ref[key] - got[key]) <= 0.005, (key, ref[key], got[key])
    assert any('cgf1' in k.lower() for k in got), sorted(got)
    # The random tiny model's AP is near 0: compare the predictions image by image too.
    ref_preds, dep_preds = mmengine.load(ref_pkl), mmengine.load(dep_pkl)
    assert len(ref_preds) == len(dep_preds) == 4
    for a, b in zip(ref_preds, dep_preds):
        pa, pb = a['pred_instances'], b['pred_instances']
        assert len(pa['scores']) == len(pb['scores']) > 0
        np.testing.assert_allclose(np.asarray(pa['scores']), np.asarray(pb['scores']),
                                   atol=TOL)
        np.testing.assert_allclose(np.asarray(pa['bboxes']), np.asarray(pb['bboxes']),
                                   atol=1e-2)


def test_profiler_calls_time_the_deployed_model(tiny_deployment, shapes_root):
    """mmdeploy's tools/profiler.py: create_input on a batch of images, test_step under its
    TimeCounter, statistics under the backend's name."""
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import get_backend, get_input_shape
    from mmdeploy.utils.timer import TimeCounter
    deploy_cfg, model_cfg = _configs(tiny_deployment)
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    model = task.build_backend_model([osp.join(tiny_deployment.work_dir, MANIFEST_NAME)])
    model = model.eval().to('cpu')
    backend = get_backend(deploy_cfg).value
    images = [shapes_root + f'valid/00000{i}.png' for i in range(4)]
    record = TimeCounter.names[backend]  # a fresh record, as in the profiler's own process
    record['count'] = 0
    record['execute_time'].clear()
    with TimeCounter.activate(warmup=1, log_interval=20, with_sync=False, batch_size=2):
        for i in range(0, len(images), 2):
            data, _ = task.create_input(images[i:i + 2], get_input_shape(deploy_cfg),
                                        data_preprocessor=model.data_preprocessor)
            model.test_step(data)
    times = TimeCounter.names[backend]['execute_time']
    assert len(times) == 1 and times[0] > 0  # 2 batches, 1 of them warm-up
    TimeCounter.print_stats(backend)


def test_wrong_size_deploy_config_names_the_fix(tiny_deployment):
    from mmdeploy.apis import build_task_processor
    from mmdeploy.utils import load_config
    deploy_cfg = load_config(osp.join(REPO, 'configs/deploy/'
                                      'instance-seg_onnxruntime_static-1008x1008.py'))[0]
    _, model_cfg = _configs(tiny_deployment)
    with pytest.raises(ValueError, match=r'static at 1008x1008.*resizes to 168x168.*'
                       r'instance-seg_onnxruntime_static-168x168\.py'):
        build_task_processor(model_cfg, deploy_cfg, 'cpu')


def test_tensorrt_config_on_cpu_names_the_fix(tiny_deployment, shapes_root, tmp_path):
    from deploy_test_utils import load_tool
    trt_cfg = osp.join(REPO, 'configs/deploy/instance-seg_tensorrt_static-168x168.py')
    args = [trt_cfg, MODEL_CFG, tiny_deployment.ckpt, shapes_root + 'valid/000000.png',
            '--work-dir', str(tmp_path), '--device', 'cpu', '--cfg-options',
            *tiny_deployment.cfg_options]
    with pytest.raises(SystemExit, match=r'--device cuda:0.*--ir-only'):
        load_tool('deploy').main(args)
    # mmdeploy's own to_backend (our TensorRT 10 manager) says the same.
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import load_config
    with pytest.raises(ValueError, match=r'CUDA device.*--device cuda:0.*build_trt_engines'):
        to_backend('tensorrt', [osp.join(tiny_deployment.work_dir, MANIFEST_NAME)],
                   work_dir=str(tmp_path), deploy_cfg=load_config(trt_cfg)[0], device='cpu')


def test_missing_graph_files_name_the_fix(tiny_deployment, tmp_path):
    from mmdeploy.apis import build_task_processor
    deploy_cfg, model_cfg = _configs(tiny_deployment)
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    with pytest.raises(FileNotFoundError, match=r'sam3_graphs\.json not found.*tools/deploy\.py'):
        task.build_backend_model([str(tmp_path / MANIFEST_NAME)])
    # A manifest whose graphs are gone.
    (tmp_path / MANIFEST_NAME).write_text(
        open(osp.join(tiny_deployment.work_dir, MANIFEST_NAME)).read())
    with pytest.raises((FileNotFoundError, ValueError), match='vision_tower'):
        task.build_backend_model([str(tmp_path / MANIFEST_NAME)])
    # mmdeploy's partition mechanism is not SAM 3's: a partition_config is refused clearly,
    # predefined (tools/deploy.py asks the task for it) or written out.
    with pytest.raises(NotImplementedError, match='remove partition_config'):
        task.get_partition_cfg('sam3')
    deploy_cfg.partition_config = dict(type='sam3', apply_marks=True, partition_cfg=[
        dict(save_file='vision_tower.onnx', start='image:input', end='feats:output')])
    with pytest.raises(ValueError, match='remove partition_config'):
        build_task_processor(model_cfg, deploy_cfg, 'cpu')


def test_old_mmdet_codebase_config_names_the_fix():
    from mmengine.config import Config

    from mmsam3.deploy import load_deploy_cfg
    cfg = Config.fromfile(DEPLOY_CFG)
    cfg.codebase_config.type = 'mmdet'
    with pytest.raises(ValueError, match=r"type='mmsam3'"):
        load_deploy_cfg(cfg)


def test_create_input_takes_phrases_and_boxes_from_the_deploy_config(tiny_deployment,
                                                                    shapes_root):
    from mmdeploy.apis import build_task_processor
    deploy_cfg, model_cfg = _configs(tiny_deployment)
    deploy_cfg.codebase_config.sam3.phrases = ['red circle', 'blue square']
    deploy_cfg.codebase_config.sam3.boxes = [[10., 20., 60., 80.]]
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    data, inputs = task.create_input(shapes_root + 'valid/000000.png')
    assert isinstance(inputs[0], torch.Tensor) and inputs[0].shape == (3, SIZE, SIZE)
    sample = data['data_samples'][0]
    assert sample.texts == ['red circle', 'blue square']
    assert len(sample.prompt_boxes) == 2  # the exemplar box goes with every phrase
    assert torch.equal(sample.prompt_boxes[0], torch.tensor([[10., 20., 60., 80.]]))
    pred = task.build_backend_model([osp.join(tiny_deployment.work_dir, MANIFEST_NAME)]) \
        .test_step(data)[0]
    assert set(pred.pred_instances.label_names) <= {'red circle', 'blue square'}


def test_deploy_tool_calls_export_the_interactive_decoder(spawned_pipeline,
                                                          interactive_deployment, shapes_root,
                                                          tmp_path):
    """A model with the interactive head through the same calls (torch2onnx in a spawned
    process, to_backend): a fourth graph in the manifest, its TensorRT profile that of the
    interactive TensorRT config, the op audit passing, and clicks through mmdeploy's backend
    model equal to the PyTorch predictor's."""
    from mmdeploy.apis import build_task_processor, torch2onnx
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import load_config

    from mmsam3.apis import SAM3Predictor
    from mmsam3.deploy import audit_onnx, read_manifest
    from mmsam3.deploy.export_graphs import ALL_GRAPH_NAMES
    from mmsam3.deploy.tensorrt_engine_builder import trt_profiles
    deploy_cfg, model_cfg = load_config(DEPLOY_CFG, interactive_deployment.model_cfg)
    img = shapes_root + 'valid/000002.png'
    work_dir = str(tmp_path)
    torch2onnx(img, work_dir, MANIFEST_NAME, DEPLOY_CFG, interactive_deployment.model_cfg,
               interactive_deployment.ckpt, device='cpu')
    backend_files = to_backend('onnxruntime', [osp.join(work_dir, MANIFEST_NAME)],
                               work_dir=work_dir, deploy_cfg=deploy_cfg, device='cpu')
    assert sorted(f for f in os.listdir(work_dir) if f.endswith('.onnx')) == \
        sorted(f'{g}.onnx' for g in ALL_GRAPH_NAMES)
    manifest = read_manifest(work_dir)
    assert list(manifest['graphs']) == list(ALL_GRAPH_NAMES)
    trt_cfg = load_config(osp.join(REPO, 'configs/deploy/'
                                   'instance-seg-interactive_tensorrt_static-168x168.py'))[0]
    assert {g: e['trt_profile'] for g, e in manifest['graphs'].items()} == \
        trt_profiles(trt_cfg, ALL_GRAPH_NAMES)
    assert audit_onnx(osp.join(work_dir, 'interactive_decoder.onnx')).ok
    task = build_task_processor(model_cfg, deploy_cfg, 'cpu')
    deployed = task.build_backend_model(backend_files)
    assert deployed.with_interactive
    model = interactive_deployment.model
    model.cfg = interactive_deployment.cfg
    predictor = SAM3Predictor(model, device='cpu').set_image(img)
    deployed.set_image(img)
    for kwargs in (dict(points=[[84, 84]], point_labels=[1]),
                   dict(box=[20, 30, 150, 140], multimask_output=False)):
        ref, got = predictor.predict(**kwargs), deployed.predict(**kwargs)
        assert np.abs(ref['low_res_logits'] - got['low_res_logits']).max() <= TOL
        assert np.abs(ref['scores'] - got['scores']).max() <= TOL
        assert (ref['masks'] != got['masks']).mean() <= 1e-3
