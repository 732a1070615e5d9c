"""TensorRT 10 inside mmdeploy (mmsam3.deploy.mmdeploy_tensorrt10), checked with a recording
stand-in for the ``tensorrt`` package: no machine of this project has TensorRT (it needs a CUDA
device to parse or build). The stand-in implements the TensorRT 10 calls the code makes, reads
the ONNX graph it is given (inputs, outputs, layer names and types; output shapes through ONNX
Runtime), and records every call; the tests check the calls and the shapes. Engines are built
and run for real only on a device (tests/test_deploy/test_tensorrt_backend.py, skipped here).
"""
import json
import os.path as osp
import pickle
import shutil
import subprocess
import sys
import types

import pytest
import torch

from deploy_test_utils import REPO
from mmsam3.deploy import GRAPH_NAMES, MANIFEST_NAME

TRT_CFG = osp.join(REPO, 'configs', 'deploy', 'instance-seg_tensorrt_static-168x168.py')
_ONNX_TO_TRT_DTYPE = {1: 'float32', 10: 'float16', 7: 'int64', 6: 'int32', 9: 'bool'}


def make_stand_in(calls):
    """A ``tensorrt`` module with the TensorRT 10 names the code uses; ``calls`` records."""
    trt = types.ModuleType('tensorrt')
    trt.float32, trt.float16, trt.int32, trt.int64, trt.bool = (
        'float32', 'float16', 'int32', 'int64', 'bool')
    trt.LayerType = types.SimpleNamespace(NORMALIZATION='NORMALIZATION', SOFTMAX='SOFTMAX',
                                          OTHER='OTHER')
    trt.BuilderFlag = types.SimpleNamespace(FP16='FP16', OBEY_PRECISION_CONSTRAINTS='OBEY')
    trt.MemoryPoolType = types.SimpleNamespace(WORKSPACE='WORKSPACE')
    trt.TensorIOMode = types.SimpleNamespace(INPUT='INPUT', OUTPUT='OUTPUT')

    class Logger:
        WARNING = 'WARNING'

        def __init__(self, severity):
            self.severity = severity

    class Layer:

        def __init__(self, name, op_type):
            self.name = name
            self.type = {'LayerNormalization': 'NORMALIZATION',
                         'Softmax': 'SOFTMAX'}.get(op_type, 'OTHER')
            self.precision = None
            self.num_outputs = 1
            self.output_types = {}

        def set_output_type(self, i, dtype):
            self.output_types[i] = dtype

    class Network:

        def __init__(self):
            self.layers, self.io = [], None

        @property
        def num_layers(self):
            return len(self.layers)

        def get_layer(self, i):
            return self.layers[i]

    class OnnxParser:

        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0

        def parse_from_file(self, path):
            import onnx
            calls.append(('parse_from_file', osp.basename(path)))
            graph = onnx.load(path, load_external_data=False).graph

            def describe(values):
                return [dict(name=v.name, dtype=_ONNX_TO_TRT_DTYPE[v.type.tensor_type.elem_type],
                             dims=[d.dim_param or d.dim_value
                                   for d in v.type.tensor_type.shape.dim]) for v in values]

            self.network.layers = [Layer(n.name, n.op_type) for n in graph.node]
            self.network.onnx_path = path
            self.network.io = dict(inputs=describe(graph.input), outputs=describe(graph.output))
            return True

    class Profile:

        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, min_shape, opt_shape, max_shape):
            calls.append(('set_shape', name, list(min_shape), list(opt_shape), list(max_shape)))
            self.shapes[name] = [list(min_shape), list(opt_shape), list(max_shape)]

    class BuilderConfig:

        def __init__(self):
            self.flags, self.profiles = [], []

        def set_memory_pool_limit(self, pool, size):
            calls.append(('set_memory_pool_limit', pool, size))

        def set_flag(self, flag):
            self.flags.append(flag)

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

    class Builder:

        def __init__(self, logger):
            pass

        def create_network(self, flags):
            calls.append(('create_network', flags))
            return Network()

        def create_builder_config(self):
            return BuilderConfig()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            fp32 = [layer.name for layer in network.layers if layer.precision == 'float32']
            calls.append(('build_serialized_network', sorted(config.flags), len(fp32)))
            # The stand-in "engine": the graph's I/O and the profile, as JSON.
            return json.dumps(dict(io=network.io, profile=config.profiles[0].shapes,
                                   fp32_layers=fp32, onnx_path=network.onnx_path)).encode()

    class Context:

        def __init__(self, engine):
            self.engine, self.bound = engine, {}

        def set_input_shape(self, name, shape):
            calls.append(('set_input_shape', name, tuple(shape)))
            self.bound[name] = tuple(shape)

        def get_tensor_shape(self, name):
            # TensorRT infers output shapes from the bound input shapes; the stand-in asks
            # ONNX Runtime (zeros of those shapes through the same graph).
            import numpy as np
            import onnxruntime as ort
            session = ort.InferenceSession(self.engine.onnx_path,
                                           providers=['CPUExecutionProvider'])
            feed = {s['name']: np.zeros(self.bound[s['name']], dtype=s['dtype'])
                    for s in self.engine.io['inputs']}
            out = session.run([name], feed)[0]
            return tuple(out.shape)

        def set_tensor_address(self, name, address):
            calls.append(('set_tensor_address', name, address))

        def execute_async_v3(self, stream_handle):
            calls.append(('execute_async_v3', stream_handle))
            return True

    class Engine:

        def __init__(self, blob):
            data = json.loads(blob.decode())
            self.io, self.profile, self.onnx_path = data['io'], data['profile'], data['onnx_path']
            self.specs = {s['name']: s for s in self.io['inputs'] + self.io['outputs']}
            self.names = [s['name'] for s in self.io['inputs'] + self.io['outputs']]

        @property
        def num_io_tensors(self):
            return len(self.names)

        def get_tensor_name(self, i):
            return self.names[i]

        def get_tensor_mode(self, name):
            inputs = {s['name'] for s in self.io['inputs']}
            return 'INPUT' if name in inputs else 'OUTPUT'

        def get_tensor_dtype(self, name):
            return self.specs[name]['dtype']

        def get_tensor_profile_shape(self, name, profile_index):
            return self.profile[name]

        def create_execution_context(self):
            return Context(self)

    class Runtime:

        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return Engine(blob)

    trt.Logger, trt.Builder, trt.OnnxParser, trt.Runtime = Logger, Builder, OnnxParser, Runtime
    return trt


@pytest.fixture
def stand_in_trt(monkeypatch):
    calls = []
    monkeypatch.setitem(sys.modules, 'tensorrt', make_stand_in(calls))
    return calls


@pytest.fixture
def graphs_dir(tiny_deployment, tmp_path):
    work_dir = tmp_path / 'work'
    shutil.copytree(tiny_deployment.work_dir, work_dir)
    return str(work_dir)


def test_mmdeploy_tensorrt_backend_is_the_tensorrt10_one():
    from mmdeploy.backend.base import get_backend_manager

    from mmsam3.deploy import TensorRT10Manager
    assert get_backend_manager('tensorrt') is TensorRT10Manager


def test_to_backend_builds_one_engine_per_graph_with_its_profile(stand_in_trt, graphs_dir):
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import load_config
    deploy_cfg = load_config(TRT_CFG)[0]
    deploy_cfg.backend_config.common_config.fp16_mode = True
    files = to_backend('tensorrt', [osp.join(graphs_dir, MANIFEST_NAME)], work_dir=graphs_dir,
                       deploy_cfg=deploy_cfg, device='cuda:0')
    assert files == [osp.join(graphs_dir, f'{g}.engine') for g in GRAPH_NAMES] + \
        [osp.join(graphs_dir, MANIFEST_NAME)]
    assert [c[1] for c in stand_in_trt if c[0] == 'parse_from_file'] == \
        [f'{g}.onnx' for g in GRAPH_NAMES]
    assert ('create_network', 0) in stand_in_trt  # explicit batch, TensorRT 10's only mode
    shapes = {c[1]: list(c[2:]) for c in stand_in_trt if c[0] == 'set_shape'}
    assert shapes['image'] == [[1, 3, 168, 168]] * 3
    assert shapes['token_ids'] == [[1, 32], [4, 32], [4, 32]]
    assert shapes['boxes'] == [[1, 1, 4], [4, 1, 4], [4, 4, 4]]
    assert shapes['feat_s16'] == [[1, 64, 12, 12]] * 3
    builds = [c for c in stand_in_trt if c[0] == 'build_serialized_network']
    assert len(builds) == 3
    for _, flags, num_fp32 in builds:
        assert flags == ['FP16', 'OBEY']
    # FP16: the vision tower's LayerNorm / Softmax layers are pinned to FP32.
    with open(files[0], 'rb') as f:
        vision = json.loads(f.read().decode())
    assert any('LayerNormalization' in n for n in vision['fp32_layers'])
    assert any('Softmax' in n for n in vision['fp32_layers'])


def test_engine_runs_by_tensor_names(stand_in_trt, graphs_dir):
    from mmdeploy.utils import load_config

    from mmsam3.deploy.graph_runners import TensorRT10Engine
    from mmsam3.deploy.tensorrt_engine_builder import build_engines
    cfg = _single_profile_cfg(load_config(TRT_CFG)[0], 1)
    (path, ) = build_engines(cfg, graphs_dir, [osp.join(graphs_dir, 'text_tower.onnx')])
    engine = TensorRT10Engine(path, device='cpu')  # the stand-in runs nothing on a device
    assert engine.input_names == ['token_ids']
    assert engine.output_names == ['text_feats', 'text_mask']
    assert engine.max_shape('token_ids') == (4, 32)
    del stand_in_trt[:]
    ids = torch.ones(3, 32, dtype=torch.long)
    out = engine.run({'token_ids': ids}, stream_handle=7)
    assert stand_in_trt[0] == ('set_input_shape', 'token_ids', (3, 32))
    assert stand_in_trt[1][:2] == ('set_tensor_address', 'token_ids')
    assert out['text_feats'].shape == (3, 32, 64) and out['text_feats'].dtype == torch.float32
    assert out['text_mask'].shape == (3, 32) and out['text_mask'].dtype == torch.bool
    addresses = {c[1]: c[2] for c in stand_in_trt if c[0] == 'set_tensor_address'}
    assert addresses['text_feats'] == out['text_feats'].data_ptr()
    assert addresses['text_mask'] == out['text_mask'].data_ptr()
    assert stand_in_trt[-1] == ('execute_async_v3', 7)


def _single_profile_cfg(cfg, index):
    """The deploy config with only graph ``index``'s profile (to build that graph alone)."""
    cfg.backend_config.model_inputs = [cfg.backend_config.model_inputs[index]]
    return cfg


def test_wrapper_needs_a_cuda_device(stand_in_trt, graphs_dir):
    from mmdeploy.backend.base import get_backend_manager
    with pytest.raises(ValueError, match='CUDA device.*--device cuda:0'):
        get_backend_manager('tensorrt').build_wrapper(
            [osp.join(graphs_dir, 'text_tower.engine')], device='cpu')


def test_spawned_to_backend_process_uses_the_tensorrt10_backend(tmp_path):
    """tools/deploy.py runs to_backend (TensorRT) in a spawned process that imports only
    mmdeploy: unpickling the pipeline's caller there brings our backend manager along."""
    from mmdeploy.apis.core import PIPELINE_MANAGER
    from mmdeploy.apis.utils import to_backend

    import mmsam3.deploy  # noqa: F401  (what the deploy config's custom_imports does)
    blob = tmp_path / 'caller.pkl'
    blob.write_bytes(pickle.dumps(PIPELINE_MANAGER.get_caller(to_backend)))
    code = ('import pickle, sys\n'
            'from mmdeploy.backend.base import get_backend_manager\n'
            'pickle.load(open(sys.argv[1], "rb"))\n'
            'print(get_backend_manager("tensorrt").__name__)\n')
    proc = subprocess.run([sys.executable, '-c', code, str(blob)], capture_output=True,
                          text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == 'TensorRT10Manager'


def test_to_backend_builds_the_interactive_decoder_with_its_points_profile(
        stand_in_trt, interactive_deployment, tiny_deployment, tmp_path):
    """An interactive export has four graphs: the interactive TensorRT config profiles each by
    name, the fourth with the number of points dynamic; the same config also serves a
    concept-only export (three engines), and a three-profile config names the missing one."""
    from mmdeploy.apis.utils import to_backend
    from mmdeploy.utils import load_config

    from mmsam3.deploy.export_graphs import ALL_GRAPH_NAMES
    cfg_path = osp.join(REPO, 'configs', 'deploy',
                        'instance-seg-interactive_tensorrt_static-168x168.py')
    work_dir = str(tmp_path / 'interactive')
    shutil.copytree(interactive_deployment.work_dir, work_dir)
    files = to_backend('tensorrt', [osp.join(work_dir, MANIFEST_NAME)], work_dir=work_dir,
                       deploy_cfg=load_config(cfg_path)[0], device='cuda:0')
    assert files == [osp.join(work_dir, f'{g}.engine') for g in ALL_GRAPH_NAMES] + \
        [osp.join(work_dir, MANIFEST_NAME)]
    shapes = {c[1]: list(c[2:]) for c in stand_in_trt if c[0] == 'set_shape'}
    assert shapes['point_coords'] == [[1, 1, 2], [1, 3, 2], [1, 32, 2]]
    assert shapes['point_labels'] == [[1, 1], [1, 3], [1, 32]]
    assert shapes['tracker_feat_s4'] == [[1, 8, 48, 48]] * 3
    assert shapes['mask_input'] == [[1, 1, 48, 48]] * 3
    # The interactive config on a concept-only export: its first three profiles.
    del stand_in_trt[:]
    concept_dir = str(tmp_path / 'concept')
    shutil.copytree(tiny_deployment.work_dir, concept_dir)
    files = to_backend('tensorrt', [osp.join(concept_dir, MANIFEST_NAME)], work_dir=concept_dir,
                       deploy_cfg=load_config(cfg_path)[0], device='cuda:0')
    assert len(files) == 4 and 'point_coords' not in {c[1] for c in stand_in_trt
                                                      if c[0] == 'set_shape'}
    with pytest.raises(ValueError, match=r"order \('vision_tower', 'text_tower', "
                                         r"'prompt_decoder', 'interactive_decoder'\)"):
        to_backend('tensorrt', [osp.join(work_dir, MANIFEST_NAME)], work_dir=work_dir,
                   deploy_cfg=load_config(TRT_CFG)[0], device='cuda:0')
