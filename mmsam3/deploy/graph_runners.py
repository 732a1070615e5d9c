"""Run one exported graph: ONNX Runtime here, TensorRT 10 on a device.

Both runners take and return ``torch.Tensor``\\ s keyed by the graph's tensor names, check the
inputs against the manifest's signature first (names, dtypes, static dims; dynamic ``num_prompts``
/ ``num_boxes`` / ``num_points`` against the deploy config's ``max_prompts`` / ``max_boxes`` /
``max_points``, which are also the TensorRT profile maxima), and check that the file is the graph
the manifest describes. A dynamic axis may not be empty, except ``num_points`` on ONNX Runtime
(a mask prompt alone has no sparse prompt); on TensorRT the profile's minimum decides.

mmdeploy 1.3.1's ``TRTWrapper`` uses the binding API TensorRT 10 removed (``binding_is_input``,
``execute_async_v2``), so :class:`TensorRT10Engine` uses the name-based API
(``get_tensor_name``, ``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``); it is
also what mmdeploy's TensorRT backend runs here (:mod:`mmsam3.deploy.mmdeploy_tensorrt10`).
"""
import os.path as osp
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

__all__ = ['GraphRunner', 'OnnxRuntimeGraphRunner', 'TensorRT10Engine', 'TensorRTGraphRunner']

_TORCH_DTYPES = {'float32': torch.float32, 'float16': torch.float16, 'int64': torch.int64,
                 'int32': torch.int32, 'bool': torch.bool}


class GraphRunner:
    """Input checks shared by the backends.

    Args:
        name (str): graph name (``vision_tower`` / ``text_tower`` / ``prompt_decoder`` /
            ``interactive_decoder``).
        signature (dict): the manifest entry (``inputs`` / ``outputs`` with name, dtype, shape).
        limits (dict): upper bounds of named dynamic axes, e.g. ``{'num_prompts': 16}``.
    """

    # Lower bounds of named dynamic axes (others: 1).
    minimums: Dict[str, int] = {}

    def __init__(self, name: str, signature: dict, limits: Optional[Dict[str, int]] = None):
        self.name = name
        self.inputs = signature['inputs']
        self.outputs = signature['outputs']
        self.limits = dict(limits or {})
        self.minimums = dict(self.minimums)

    @property
    def input_names(self) -> List[str]:
        return [i['name'] for i in self.inputs]

    @property
    def output_names(self) -> List[str]:
        return [o['name'] for o in self.outputs]

    def check_inputs(self, feed: Dict[str, Tensor]) -> Dict[str, Tensor]:
        """Inputs in the graph's dtypes; raises ``ValueError`` naming the fix."""
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise ValueError(f'{self.name} graph: missing inputs {missing}')
        checked = {}
        for spec in self.inputs:
            value = feed[spec['name']]
            value = value if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
            shape = tuple(value.shape)
            want = spec['shape']
            if len(shape) != len(want):
                raise ValueError(f'{self.name} graph: input {spec["name"]} has shape {shape}, '
                                 f'expected {len(want)} dims {want}')
            for axis, (got, dim) in enumerate(zip(shape, want)):
                if isinstance(dim, int) and dim > 0 and got != dim:
                    raise ValueError(self._static_dim_error(spec['name'], shape, want, axis))
                if isinstance(dim, str) and dim in self.limits and got > self.limits[dim]:
                    raise ValueError(
                        f'{self.name} graph: {got} {dim.replace("num_", "")} but the exported '
                        f'profile allows at most {self.limits[dim]} ({dim}); run them in chunks '
                        f'(DeployedSAM3 does) or export with a deploy config whose '
                        f'codebase_config.sam3.max_{dim[4:]} is larger')
                low = self.minimums.get(dim, 1) if isinstance(dim, str) else 0
                if isinstance(dim, str) and got < low:
                    hint = (' (a mask prompt alone runs with no points; this engine\'s '
                            'optimisation profile starts at 1 point: add a click, or build the '
                            'engine with num_points min_shape 0)' if dim == 'num_points' else '')
                    raise ValueError(f'{self.name} graph: input {spec["name"]} axis {axis} '
                                     f'({dim}) has {got}, at least {low} needed; pass at least '
                                     f'{low}{hint}')
            checked[spec['name']] = value.to(_TORCH_DTYPES.get(spec['dtype'], value.dtype))
        return checked

    def _static_dim_error(self, name, shape, want, axis) -> str:
        if name == 'image':
            return (f'vision_tower graph was exported for a {want[2]}x{want[3]} image, got '
                    f'{shape[2]}x{shape[3]}; resize / pad the input to {want[2]}x{want[3]} '
                    '(the model config test pipeline with that scale and '
                    f'pad_size={want[2]}) or export with a deploy config of this size '
                    f'(configs/deploy/instance-seg_*_static-{shape[2]}x{shape[3]}.py)')
        if name == 'token_ids':
            return (f'text_tower graph takes token ids of length exactly {want[1]}, got '
                    f'{shape[1]}; tokenize with SAM3Tokenizer(context_length={want[1]}) (it '
                    'pads and truncates longer phrases)')
        return (f'{self.name} graph: input {name} has shape {shape}, the graph was exported for '
                f'{want} (axis {axis}); the features must come from graphs exported together')

    def __call__(self, **feed: Tensor) -> Dict[str, Tensor]:
        return self.run(self.check_inputs(feed))

    def run(self, feed: Dict[str, Tensor]) -> Dict[str, Tensor]:
        raise NotImplementedError


class OnnxRuntimeGraphRunner(GraphRunner):
    """One ONNX file on ONNX Runtime (CPU, or CUDA when its provider is installed)."""

    minimums = dict(num_points=0)

    def __init__(self, path: str, name: str, signature: dict,
                 limits: Optional[Dict[str, int]] = None, device: str = 'cpu',
                 num_threads: Optional[int] = None):
        super().__init__(name, signature, limits)
        import onnxruntime as ort
        if not osp.isfile(path):
            raise FileNotFoundError(f'{name} graph file not found: {path} (export it with '
                                    'tools/deployment/deploy.py)')
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only (static-shape merge notes are noise)
        # No CPU memory arena: each of the three sessions would otherwise keep its own peak
        # (at 1008 the vision tower's global attention alone needs GBs, grown in powers of two)
        # while the next graph runs; without it the process peak is one graph's, not the sum.
        options.enable_cpu_mem_arena = False
        if num_threads:
            options.intra_op_num_threads = int(num_threads)
        providers = ['CPUExecutionProvider']
        if str(device).startswith('cuda') and 'CUDAExecutionProvider' in \
                ort.get_available_providers():
            providers.insert(0, 'CUDAExecutionProvider')
        self.session = ort.InferenceSession(path, options, providers=providers)
        got_in = [i.name for i in self.session.get_inputs()]
        got_out = [o.name for o in self.session.get_outputs()]
        if got_in != self.input_names or got_out != self.output_names:
            raise ValueError(f'{path} is not the {name} graph the manifest describes (inputs '
                             f'{got_in} / outputs {got_out}, expected {self.input_names} / '
                             f'{self.output_names}); pass the files of one export')
        self.device = torch.device(device)

    def run(self, feed: Dict[str, Tensor]) -> Dict[str, Tensor]:
        arrays = {k: v.detach().cpu().numpy() for k, v in feed.items()}
        outs = self.session.run(self.output_names, arrays)
        return {n: torch.from_numpy(np.ascontiguousarray(o)).to(self.device)
                for n, o in zip(self.output_names, outs)}


class TensorRT10Engine:
    """A serialized TensorRT 10 engine run through the name-based I/O API.

    Shared by :class:`TensorRTGraphRunner` and mmdeploy's backend wrapper
    (:class:`~mmsam3.deploy.mmdeploy_tensorrt10.TensorRT10Wrapper`). Written against TensorRT
    10's documented Python API; on this project's machines (no TensorRT) it is exercised only
    with a recording stand-in (tests/test_deploy/test_mmdeploy_tensorrt10.py).
    """

    def __init__(self, path: str, device: str = 'cuda:0'):
        import tensorrt as trt
        if not osp.isfile(path):
            raise FileNotFoundError(f'TensorRT engine not found: {path} (build it on the device: '
                                    'mmdeploy\'s tools/deploy.py with a TensorRT deploy config '
                                    'and --device cuda:0, or '
                                    'tools/deployment/build_trt_engines.sh)')
        self.trt = trt
        self.path = path
        self.device = torch.device(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        with open(path, 'rb') as f:
            self.engine = trt.Runtime(self.logger).deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise RuntimeError(f'{path}: TensorRT could not deserialize it (engines only load '
                               'on the TensorRT version and GPU they were built with)')
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]

    def max_shape(self, name: str) -> Tuple[int, ...]:
        """The largest shape optimisation profile 0 allows for input ``name``."""
        return tuple(int(d) for d in self.engine.get_tensor_profile_shape(name, 0)[2])

    def min_shape(self, name: str) -> Tuple[int, ...]:
        """The smallest shape optimisation profile 0 allows for input ``name``."""
        return tuple(int(d) for d in self.engine.get_tensor_profile_shape(name, 0)[0])

    def torch_dtype(self, name: str) -> torch.dtype:
        trt = self.trt
        table = {trt.float32: torch.float32, trt.float16: torch.float16,
                 trt.int32: torch.int32, trt.int64: torch.int64, trt.bool: torch.bool}
        return table[self.engine.get_tensor_dtype(name)]

    def run(self, feed: Dict[str, Tensor], stream_handle: int) -> Dict[str, Tensor]:
        """Enqueue one run on the CUDA stream ``stream_handle``; the caller synchronises."""
        missing = [n for n in self.input_names if n not in feed]
        if missing:
            raise ValueError(f'{self.path}: missing inputs {missing}')
        keep = []
        for name in self.input_names:
            value = feed[name].to(self.device, self.torch_dtype(name)).contiguous()
            keep.append(value)  # alive until the run is enqueued
            self.context.set_input_shape(name, tuple(value.shape))
            self.context.set_tensor_address(name, value.data_ptr())
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            out = torch.empty(shape, dtype=self.torch_dtype(name), device=self.device)
            outputs[name] = out
            self.context.set_tensor_address(name, out.data_ptr())
        if not self.context.execute_async_v3(stream_handle):
            raise RuntimeError(f'{self.path}: TensorRT execution failed')
        return outputs


class TensorRTGraphRunner(GraphRunner):
    """One SAM 3 graph's TensorRT 10 engine (CUDA device only)."""

    def __init__(self, path: str, name: str, signature: dict,
                 limits: Optional[Dict[str, int]] = None, device: str = 'cuda:0'):
        super().__init__(name, signature, limits)
        import tensorrt  # noqa: F401  (ImportError first: the clearest message)
        if not osp.isfile(path):
            raise FileNotFoundError(f'{name} engine not found: {path} (build it on the device: '
                                    'tools/deployment/build_trt_engines.sh)')
        if not torch.cuda.is_available():
            raise RuntimeError('TensorRT engines need a CUDA device')
        self.device = torch.device(device)
        self.engine = TensorRT10Engine(path, device)
        got_in, got_out = self.engine.input_names, self.engine.output_names
        if sorted(got_in) != sorted(self.input_names) or \
                sorted(got_out) != sorted(self.output_names):
            raise ValueError(f'{path} is not the {name} engine the manifest describes (inputs '
                             f'{got_in} / outputs {got_out})')
        # The optimisation profile is the authority on TensorRT: tighten the limits to it.
        for spec in self.inputs:
            for dim, low, top in zip(spec['shape'], self.engine.min_shape(spec['name']),
                                     self.engine.max_shape(spec['name'])):
                if isinstance(dim, str):
                    self.limits[dim] = min(self.limits.get(dim, top), int(top))
                    self.minimums[dim] = max(self.minimums.get(dim, 0), int(low))

    def run(self, feed: Dict[str, Tensor]) -> Dict[str, Tensor]:
        stream = torch.cuda.current_stream(self.device)
        outputs = self.engine.run(feed, stream.cuda_stream)
        stream.synchronize()
        return {n: (o.float() if o.dtype == torch.float16 else o) for n, o in outputs.items()}
