"""TensorRT 10 inside mmdeploy 1.3.1: the one place where mmdeploy's TensorRT backend is replaced.

mmdeploy 1.3.1's ``TensorRTManager`` builds engines with ``from_onnx`` and runs them with
``TRTWrapper``, both on the binding API TensorRT 10 removed (``binding_is_input``,
``get_binding_shape``, ``execute_async_v2``; upstream mmdeploy#2758), and JetPack 6.x ships
TensorRT 10.3. Importing this module registers :class:`TensorRT10Manager` as mmdeploy's
``'tensorrt'`` backend manager:

* ``to_backend``: one engine per graph with ``backend_config.model_inputs[i]``
  (:func:`~mmsam3.deploy.tensorrt_engine_builder.build_engines`: ``OnnxParser``,
  ``IOptimizationProfile``, ``build_serialized_network``). A SAM 3 manifest
  (``sam3_graphs.json``, what the export hands on) stands for its three graphs; other ONNX
  files are built as they are.
* ``build_wrapper``: :class:`TensorRT10Wrapper`, mmdeploy's wrapper interface over
  :class:`~mmsam3.deploy.graph_runners.TensorRT10Engine` (``set_input_shape``,
  ``set_tensor_address``, ``execute_async_v3``).

mmdeploy's ``tools/deploy.py`` runs ``to_backend`` for TensorRT in a spawned process that
imports only mmdeploy. The deploy configs' ``custom_imports`` import ``mmsam3.deploy`` in the
parent when the config is loaded; this module then adds a no-op input hook to mmdeploy's
``to_backend`` pipeline, and the spawned process, unpickling the hook, imports this module and
so uses this manager too.

Written against TensorRT 10's documented Python API; no machine of this project has TensorRT,
so it is covered by a recording stand-in (tests/test_deploy/test_mmdeploy_tensorrt10.py).
"""
import logging
import os.path as osp
from typing import Any, Optional, Sequence

import torch
from mmdeploy.backend.base import BACKEND_MANAGERS, BaseWrapper
from mmdeploy.backend.tensorrt.backend_manager import TensorRTManager

__all__ = ['TensorRT10Manager', 'TensorRT10Wrapper']


class TensorRT10Wrapper(BaseWrapper):
    """mmdeploy's backend wrapper for one TensorRT 10 engine.

    Args:
        engine (str): the serialized engine file.
        output_names (list[str], optional): outputs to return (default: all, engine order).
        device (str): the CUDA device.
    """

    def __init__(self, engine: str, output_names: Optional[Sequence[str]] = None,
                 device: str = 'cuda:0'):
        from .graph_runners import TensorRT10Engine
        if not str(device).startswith('cuda'):
            raise ValueError(f'TensorRT engines run on a CUDA device, got device={device!r}; '
                             'pass --device cuda:0')
        self.engine = TensorRT10Engine(engine, device)
        super().__init__(list(output_names or self.engine.output_names))

    def forward(self, inputs: dict) -> dict:
        stream = torch.cuda.current_stream(self.engine.device)
        outputs = self.engine.run(inputs, stream.cuda_stream)
        stream.synchronize()
        return {name: outputs[name] for name in self.output_names}


@BACKEND_MANAGERS.register('tensorrt')
class TensorRT10Manager(TensorRTManager):
    """mmdeploy's ``'tensorrt'`` backend on TensorRT 10 (replaces ``TensorRTManager``)."""

    @classmethod
    def build_wrapper(cls, backend_files: Sequence[str], device: str = 'cuda:0',
                      input_names: Optional[Sequence[str]] = None,
                      output_names: Optional[Sequence[str]] = None,
                      deploy_cfg: Optional[Any] = None, **kwargs):
        return TensorRT10Wrapper(backend_files[0], output_names, device)

    @classmethod
    def to_backend(cls, ir_files: Sequence[str], work_dir: str, deploy_cfg: Any,
                   log_level: int = logging.INFO, device: str = 'cpu', **kwargs):
        """Engines for ``ir_files`` (a SAM 3 manifest expands to its three graphs); returns the
        engine files, followed by the manifest when one was given."""
        from mmdeploy.utils import load_config

        from .graph_exporter import read_manifest
        from .tensorrt_engine_builder import build_engines
        if not str(device).startswith('cuda'):
            raise ValueError(
                f'TensorRT builds engines on a CUDA device, got device={device!r}: run with '
                '--device cuda:0 where TensorRT 10 is installed (the Jetson). To prepare the '
                'graphs on a CPU-only host, export them there (tools/deployment/deploy.py ... '
                '--device cpu --ir-only) and build on the device with '
                'tools/deployment/build_trt_engines.sh WORK_DIR')
        deploy_cfg = load_config(deploy_cfg)[0]
        onnx_files, manifests = [], []
        for path in ir_files:
            if path.endswith('.json'):
                manifest = read_manifest(path)
                root = osp.dirname(path)
                onnx_files += [osp.join(root, g['file']) for g in manifest['graphs'].values()]
                manifests.append(path)
            else:
                onnx_files.append(path)
        index = int(str(device).split(':')[1]) if ':' in str(device) else 0
        if torch.cuda.is_available():
            with torch.cuda.device(index):
                engines = build_engines(deploy_cfg, work_dir, onnx_files)
        else:  # TensorRT itself reports the missing device
            engines = build_engines(deploy_cfg, work_dir, onnx_files)
        return engines + manifests


def _import_in_spawned_process(*args, **kwargs):
    """Input hook of mmdeploy's ``to_backend`` pipeline: returns its arguments unchanged. Its
    pickled reference makes a spawned ``to_backend`` process import this module first."""
    return args, kwargs


def _hook_to_backend() -> None:
    from mmdeploy.apis.core import PIPELINE_MANAGER
    from mmdeploy.apis.utils import to_backend
    hooks = PIPELINE_MANAGER.get_input_hooks(to_backend)
    if _import_in_spawned_process not in hooks:
        hooks.append(_import_in_spawned_process)


_hook_to_backend()
