"""Export SAM 3's three graphs through mmdeploy, and describe them in a manifest.

mmdeploy's ``torch2onnx`` builds one graph with image inputs from its task processor; SAM 3 needs
three graphs, one of them fed with token ids, which no mmdeploy task creates. So each graph goes
through mmdeploy's lower-level ``mmdeploy.apis.onnx.export`` (the ``RewriterContext``, the
deploy config, mmdeploy's and our rewriters, ``patch_model``), with the inputs
:func:`graph_specs` makes. Graphs whose weights exceed ``external_data_mib`` are saved with
their weights in one external-data file beside them (the fp32 vision tower is ~1.85 GB, the
edge of protobuf's 2 GB limit).

The manifest (``sam3_graphs.json``) lists, per graph, its file, its inputs and outputs (names,
dtypes, shapes with named dynamic axes), the fingerprint of the weights it was made from, and
the deploy settings (input size, context length, prompt / box limits).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Optional, Sequence, Union

import torch
from mmengine.config import Config
from torch import nn

from .export_graphs import GRAPH_NAMES, graph_specs
from .model_fingerprint import weights_fingerprint
from .tensorrt_engine_builder import FP32_OP_TYPES, trt_profiles

__all__ = ['MANIFEST_NAME', 'load_deploy_cfg', 'sam3_deploy_settings', 'export_sam3_graphs',
           'graph_signature', 'onnx_dtype_name', 'read_manifest']

MANIFEST_NAME = 'sam3_graphs.json'
_SAM3_DEFAULTS = dict(context_length=32, max_prompts=16, max_boxes=8, external_data_mib=512)


def load_deploy_cfg(deploy_cfg: Union[str, Config]) -> Config:
    """Load a deploy config the mmdeploy way and import its ``codebase_config.module`` list."""
    from mmdeploy.codebase import import_codebase
    from mmdeploy.utils import get_codebase, get_codebase_config, load_config
    if isinstance(deploy_cfg, str) and not osp.isfile(deploy_cfg):
        raise FileNotFoundError(f'deploy config not found: {deploy_cfg} (see configs/deploy/)')
    cfg = load_config(deploy_cfg)[0]
    modules = get_codebase_config(cfg).get('module', [])
    if 'mmsam3.deploy' not in modules:
        raise ValueError("deploy config: codebase_config.module must include 'mmsam3.deploy' "
                         '(it registers the SAM 3 rewriters)')
    import_codebase(get_codebase(cfg), modules)
    return cfg


def sam3_deploy_settings(deploy_cfg: Config) -> dict:
    """``input_hw``, ``opset`` and ``codebase_config.sam3`` (with defaults) of a deploy config."""
    from mmdeploy.utils import get_codebase_config, get_input_shape, get_onnx_config
    shape = get_input_shape(deploy_cfg)
    if shape is None:
        raise ValueError('deploy config: SAM 3 graphs are static; set onnx_config.input_shape '
                         '= [width, height] (e.g. instance-seg_onnxruntime_static-1008x1008.py)')
    settings = dict(_SAM3_DEFAULTS)
    settings.update(get_codebase_config(deploy_cfg).get('sam3', {}))
    settings['input_hw'] = [int(shape[1]), int(shape[0])]
    settings['opset'] = int(get_onnx_config(deploy_cfg).get('opset_version', 11))
    return settings


_ONNX_DTYPES = {1: 'float32', 10: 'float16', 16: 'bfloat16', 6: 'int32', 7: 'int64', 9: 'bool',
                11: 'float64', 2: 'uint8', 3: 'int8'}


def onnx_dtype_name(elem_type: int) -> str:
    return _ONNX_DTYPES.get(elem_type, f'onnx-type-{elem_type}')


def graph_signature(spec, example_outputs) -> dict:
    """``{'inputs': [...], 'outputs': [...]}``: name, dtype and shape of every graph tensor, a
    dynamic axis given by its name (``num_prompts`` / ``num_boxes``), the others as numbers.

    Shapes come from the example run, not from ONNX shape inference (which leaves some static
    output dims of the vision tower symbolic).
    """

    def describe(names, tensors):
        out = []
        for name, t in zip(names, tensors):
            dims = [spec.dynamic_axes.get(name, {}).get(i, int(d)) for i, d in
                    enumerate(t.shape)]
            out.append(dict(name=name, dtype=str(t.dtype).replace('torch.', ''), shape=dims))
        return out

    return dict(inputs=describe(spec.input_names, spec.example_inputs),
                outputs=describe(spec.output_names, example_outputs))


def graph_names(model_proto):
    """``(input names, output names)`` of an ONNX graph (initializers left out)."""
    inits = {i.name for i in model_proto.graph.initializer}
    return ([i.name for i in model_proto.graph.input if i.name not in inits],
            [o.name for o in model_proto.graph.output])


def _weights_bytes(model_proto) -> int:
    import numpy as np
    total = 0
    for init in model_proto.graph.initializer:
        itemsize = np.dtype(onnx_dtype_name(init.data_type).replace('bfloat16', 'float16')).itemsize
        total += int(np.prod(init.dims, dtype=np.int64)) * itemsize
    return total


def _save(tmp_path: str, out_path: str, external_mib: float) -> bool:
    """Re-save a freshly exported graph into ``out_path``; weights go to ``<file>.data`` when
    they exceed ``external_mib``. Returns whether external data was used."""
    import onnx
    proto = onnx.load(tmp_path)  # also reads per-tensor files torch writes beyond 2 GB
    external = _weights_bytes(proto) > external_mib * 2**20
    for stale in (out_path, out_path + '.data'):
        if osp.exists(stale):
            os.remove(stale)
    if external:
        onnx.save_model(proto, out_path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=osp.basename(out_path) + '.data', size_threshold=1024)
        # onnx creates the weights file owner-only (0600); give it the graph file's mode so
        # that copying the export to a device as another user does not fail on it.
        shutil.copymode(out_path, out_path + '.data')
    else:
        onnx.save_model(proto, out_path)
    onnx.checker.check_model(out_path)  # by path: works beyond 2 GB
    return external


def export_sam3_graphs(deploy_cfg: Union[str, Config],
                       model: nn.Module,
                       work_dir: str,
                       graphs: Sequence[str] = GRAPH_NAMES,
                       model_info: Optional[dict] = None,
                       log: Callable[[str], None] = print) -> dict:
    """Export ``graphs`` of ``model`` (a built, loaded ``SAM3``) into ``work_dir``.

    Writes ``<graph>.onnx`` (+ ``.onnx.data``) per graph and the manifest; returns the manifest.
    ``model_info`` (e.g. config and checkpoint paths) is stored in the manifest as is.
    """
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import get_backend, get_onnx_config
    deploy_cfg = load_deploy_cfg(deploy_cfg)
    settings = sam3_deploy_settings(deploy_cfg)
    unknown = set(graphs) - set(GRAPH_NAMES)
    if unknown:
        raise ValueError(f'unknown graph(s) {sorted(unknown)}; choose from {GRAPH_NAMES}')
    onnx_cfg = get_onnx_config(deploy_cfg)
    backend = get_backend(deploy_cfg).value
    model = model.eval()
    os.makedirs(work_dir, exist_ok=True)
    specs = graph_specs(model, settings['input_hw'], settings['context_length'])
    profiles = trt_profiles(deploy_cfg) if backend == 'tensorrt' else None
    manifest = dict(format='mmsam3-graphs-1', settings=settings, backend=backend,
                    model=model_info or {}, graphs={})
    with torch.no_grad():
        for name in graphs:
            spec = specs[name]
            out_path = osp.join(work_dir, f'{name}.onnx')
            tmp_dir = tempfile.mkdtemp(prefix=f'sam3_{name}_', dir=work_dir)
            try:
                export(spec.module, spec.example_inputs, osp.join(tmp_dir, name),
                       backend=backend, context_info=dict(deploy_cfg=deploy_cfg),
                       input_names=spec.input_names, output_names=spec.output_names,
                       opset_version=settings['opset'], dynamic_axes=spec.dynamic_axes,
                       verbose=False,
                       keep_initializers_as_inputs=onnx_cfg.get('keep_initializers_as_inputs',
                                                                False),
                       optimize=False)
                external = _save(osp.join(tmp_dir, f'{name}.onnx'), out_path,
                                 settings['external_data_mib'])
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            import onnx
            proto = onnx.load(out_path, load_external_data=False)
            entry = dict(file=osp.basename(out_path), external_data=external,
                         fingerprint=weights_fingerprint(spec.module),
                         **graph_signature(spec, spec.outputs()))
            names = graph_names(proto)
            if names != (spec.input_names, spec.output_names):
                raise RuntimeError(f'{name}: exported tensor names {names} differ from the spec')
            # Node names TensorRT FP16 builds keep in FP32 (trtexec --layerPrecisions).
            entry['fp32_layers'] = [n.name for n in proto.graph.node
                                    if n.op_type in FP32_OP_TYPES and n.name]
            if profiles is not None:
                entry['trt_profile'] = profiles[name]
            manifest['graphs'][name] = entry
            size = osp.getsize(out_path) + (osp.getsize(out_path + '.data') if external else 0)
            log(f'{name}: {out_path} ({size / 2**20:.1f} MiB'
                f'{", external data" if external else ""})')
    manifest_path = osp.join(work_dir, MANIFEST_NAME)
    if osp.isfile(manifest_path):  # exporting some graphs keeps the others' entries
        with open(manifest_path) as f:
            old = json.load(f)
        if old.get('settings') == settings:
            for name, entry in old.get('graphs', {}).items():
                manifest['graphs'].setdefault(name, entry)
    with open(manifest_path, 'w') as f:
        json.dump(manifest, f, indent=2)
    return manifest


def read_manifest(path_or_dir: str) -> dict:
    """The manifest of a work dir (or the file itself), with a clear error when missing."""
    path = (osp.join(path_or_dir, MANIFEST_NAME) if osp.isdir(path_or_dir) else path_or_dir)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found: export the graphs first with '
                                'tools/deployment/deploy.py DEPLOY_CFG MODEL_CFG CKPT IMG '
                                '--work-dir DIR')
    with open(path) as f:
        return json.load(f)

