"""SAM 3's ONNX export: three graphs and a manifest, written from inside mmdeploy's export.

mmdeploy's ``torch2onnx`` (what its ``tools/deploy.py`` runs) builds the model with our task
processor (:mod:`mmsam3.deploy.sam3_task`), makes the image input, and calls
``torch.onnx.export(model, image, <work_dir>/sam3_graphs.onnx)`` inside its
``RewriterContext``. For a ``SAM3`` our rewriter of ``torch.onnx.export`` calls
:func:`write_graph_set`, which traces the vision tower, text tower and prompt decoder one by one
with the original exporter (so mmdeploy's and our rewriters apply to each) and writes them with
the manifest; the "IR file" mmdeploy passes on to ``to_backend`` and the backend model is the
manifest, ``sam3_graphs.json`` (``onnx_config.save_file``). mmdeploy's partition mechanism
(``extract_model``) is not used: in 1.3.1 it fails with onnx 1.23, pinned here (its extractor patch
expects a list where onnx now passes a set) and it saves partitions without external data.

Graphs whose weights exceed ``external_data_mib`` are saved with their weights in one
external-data file beside them (the fp32 vision tower is ~1.85 GB, the edge of protobuf's 2 GB
limit). The manifest lists, per graph, its file, its inputs and outputs (names, dtypes, shapes
with named dynamic axes), the fingerprint of the weights it was made from, the layers FP16
engines keep in FP32 and the TensorRT profile, plus the deploy settings (input size, context
length, prompt / box limits).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Callable, Optional, Union

import torch
from mmengine.config import Config
from torch import nn

from .export_graphs import graph_names_of, graph_specs
from .model_fingerprint import weights_fingerprint
from .tensorrt_engine_builder import FP32_OP_TYPES, profile_from_signature, trt_profiles

__all__ = ['MANIFEST_NAME', 'CODEBASE_TYPE', 'load_deploy_cfg', 'sam3_deploy_settings',
           'write_graph_set', 'export_sam3_graphs', 'graph_signature', 'onnx_dtype_name',
           'read_manifest']

MANIFEST_NAME = 'sam3_graphs.json'
CODEBASE_TYPE = 'mmsam3'
_SAM3_DEFAULTS = dict(context_length=32, max_prompts=16, max_boxes=8, max_points=32,
                      external_data_mib=512)
# codebase_config.sam3 keys that are the deploy tool's example prompts, not graph settings.
_TOOL_INPUTS = ('phrases', 'boxes')


def load_deploy_cfg(deploy_cfg: Union[str, Config]) -> Config:
    """Load a deploy config the mmdeploy way, check that it is a SAM 3 one, and import its
    ``codebase_config.module`` list (which registers the ``mmsam3`` codebase)."""
    from mmdeploy.codebase import import_codebase
    from mmdeploy.utils import get_codebase, get_codebase_config, load_config
    if isinstance(deploy_cfg, str) and not osp.isfile(deploy_cfg):
        raise FileNotFoundError(f'deploy config not found: {deploy_cfg} (see configs/deploy/)')
    cfg = load_config(deploy_cfg)[0]
    check_deploy_cfg(cfg)
    import_codebase(get_codebase(cfg), get_codebase_config(cfg).get('module', []))
    return cfg


def check_deploy_cfg(cfg: Config) -> None:
    """Raise a ``ValueError`` naming the fix when ``cfg`` is not a SAM 3 deploy config."""
    from mmdeploy.utils import get_codebase_config, get_onnx_config
    codebase = get_codebase_config(cfg)
    if codebase.get('type') != CODEBASE_TYPE:
        raise ValueError(f"deploy config: codebase_config.type is {codebase.get('type')!r}; SAM 3 "
                         f"is its own mmdeploy codebase: codebase_config=dict(type="
                         f"'{CODEBASE_TYPE}', task='InstanceSegmentation', "
                         "module=['mmsam3.deploy']) (see configs/deploy/_base_/)")
    if 'mmsam3.deploy' not in codebase.get('module', []):
        raise ValueError("deploy config: codebase_config.module must include 'mmsam3.deploy' "
                         '(it registers the mmsam3 codebase and the SAM 3 rewriters)')
    save_file = get_onnx_config(cfg).get('save_file')
    if save_file != MANIFEST_NAME:
        raise ValueError(f'deploy config: onnx_config.save_file is {save_file!r}; SAM 3 exports '
                         f'three graphs described by one manifest: set save_file='
                         f"'{MANIFEST_NAME}'")


def sam3_deploy_settings(deploy_cfg: Config) -> dict:
    """``input_hw``, ``opset`` and ``codebase_config.sam3`` (with defaults) of a deploy config.

    Read from ``onnx_config``: inside mmdeploy's export the config also carries an
    ``ir_config`` made from the export's arguments, without the input shape."""
    from mmdeploy.utils import get_codebase_config, get_ir_config
    onnx_cfg = deploy_cfg.get('onnx_config') or get_ir_config(deploy_cfg)
    shape = onnx_cfg.get('input_shape')
    if shape is None:
        raise ValueError('deploy config: SAM 3 graphs are static; set onnx_config.input_shape '
                         '= [width, height] (e.g. instance-seg_onnxruntime_static-1008x1008.py)')
    settings = dict(_SAM3_DEFAULTS)
    settings.update({k: v for k, v in get_codebase_config(deploy_cfg).get('sam3', {}).items()
                     if k not in _TOOL_INPUTS})
    settings['input_hw'] = [int(shape[1]), int(shape[0])]
    settings['opset'] = int(onnx_cfg.get('opset_version', 11))
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


def write_graph_set(model: nn.Module,
                    deploy_cfg: Config,
                    output_path: str,
                    onnx_export: Callable,
                    image: Optional[torch.Tensor] = None,
                    opset_version: Optional[int] = None,
                    keep_initializers_as_inputs: bool = False,
                    log: Callable[[str], None] = print) -> dict:
    """Write the graphs of ``model`` (three, four with the interactive head) and their manifest
    into ``dirname(output_path)``.

    This is what SAM 3's ONNX export is: mmdeploy's ``export`` (``torch2onnx``) calls
    ``torch.onnx.export(model, image, <work_dir>/sam3_graphs.onnx, ...)`` inside its
    ``RewriterContext``, and our rewriter of ``torch.onnx.export``
    (:mod:`mmsam3.deploy.onnx_rewriters`) hands a ``SAM3`` here with ``onnx_export`` = the
    original ``torch.onnx.export``, so every graph is traced with mmdeploy's and our rewriters.
    ``image`` (the preprocessed input mmdeploy's ``create_input`` made) is the vision tower's
    example input; the text and decoder examples come from :func:`graph_specs`.

    Writes ``<graph>.onnx`` (+ ``.onnx.data`` above ``external_data_mib``) per graph and
    ``sam3_graphs.json``; returns the manifest.
    """
    from mmdeploy.utils import get_backend
    settings = sam3_deploy_settings(deploy_cfg)
    work_dir = osp.dirname(output_path) or '.'
    backend = get_backend(deploy_cfg).value
    opset = int(opset_version or settings['opset'])
    model = model.eval()
    os.makedirs(work_dir, exist_ok=True)
    specs = graph_specs(model, settings['input_hw'], settings['context_length'], image=image)
    limits = dict(num_prompts=int(settings['max_prompts']),
                  num_boxes=int(settings['max_boxes']), num_points=int(settings['max_points']))
    names = graph_names_of(model)
    profiles = trt_profiles(deploy_cfg, names) if backend == 'tensorrt' else None
    manifest = dict(format='mmsam3-graphs-1', settings=settings, backend=backend, graphs={})
    import onnx
    with torch.no_grad():
        for name in names:
            spec = specs[name]
            out_path = osp.join(work_dir, f'{name}.onnx')
            tmp_dir = tempfile.mkdtemp(prefix=f'sam3_{name}_', dir=work_dir)
            try:
                tmp_path = osp.join(tmp_dir, f'{name}.onnx')
                onnx_export(spec.module, spec.example_inputs, tmp_path, export_params=True,
                            input_names=spec.input_names, output_names=spec.output_names,
                            opset_version=opset, dynamic_axes=spec.dynamic_axes,
                            keep_initializers_as_inputs=keep_initializers_as_inputs,
                            verbose=False)
                external = _save(tmp_path, out_path, settings['external_data_mib'])
            finally:
                shutil.rmtree(tmp_dir, ignore_errors=True)
            proto = onnx.load(out_path, load_external_data=False)
            entry = dict(file=osp.basename(out_path), external_data=external,
                         fingerprint=weights_fingerprint(spec.module),
                         **graph_signature(spec, spec.outputs()))
            io_names = graph_names(proto)
            if io_names != (spec.input_names, spec.output_names):
                raise RuntimeError(f'{name}: exported tensor names {io_names} differ from the '
                                   'spec')
            # Node names TensorRT FP16 builds keep in FP32 (trtexec --layerPrecisions).
            entry['fp32_layers'] = [n.name for n in proto.graph.node
                                    if n.op_type in FP32_OP_TYPES and n.name]
            # The profile the engine is built with: the TensorRT config's, or (for graphs made
            # with an ONNX Runtime config, to be built on the device) one from the limits.
            entry['trt_profile'] = (profiles[name] if profiles is not None else
                                    profile_from_signature(entry['inputs'], limits))
            manifest['graphs'][name] = entry
            size = osp.getsize(out_path) + (osp.getsize(out_path + '.data') if external else 0)
            log(f'{name}: {out_path} ({size / 2**20:.1f} MiB'
                f'{", external data" if external else ""})')
    with open(osp.join(work_dir, MANIFEST_NAME), 'w') as f:
        json.dump(manifest, f, indent=2)
    return manifest


def export_sam3_graphs(deploy_cfg: Union[str, Config],
                       model: nn.Module,
                       work_dir: str,
                       image: Optional[torch.Tensor] = None) -> dict:
    """Export a built ``SAM3`` through mmdeploy's ``export`` (the call ``torch2onnx`` makes
    after building the model from a checkpoint), for callers that hold the model already.

    ``image`` (``(1, 3, H, W)``, preprocessed) defaults to a random one. No backend device
    is needed (mmdeploy traces on the CPU), so a TensorRT deploy config's graphs can be made on
    a CPU host and the engines built on the device. Returns the manifest.
    """
    from mmdeploy.apis.onnx import export
    from mmdeploy.utils import get_backend, get_onnx_config
    deploy_cfg = load_deploy_cfg(deploy_cfg)
    settings = sam3_deploy_settings(deploy_cfg)
    onnx_cfg = get_onnx_config(deploy_cfg)
    if image is None:
        h, w = settings['input_hw']
        image = torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(0))
    os.makedirs(work_dir, exist_ok=True)
    export(model.eval(), image, osp.join(work_dir, osp.splitext(MANIFEST_NAME)[0]),
           backend=get_backend(deploy_cfg).value, context_info=dict(deploy_cfg=deploy_cfg),
           input_names=onnx_cfg['input_names'], output_names=onnx_cfg['output_names'],
           opset_version=settings['opset'],
           keep_initializers_as_inputs=onnx_cfg.get('keep_initializers_as_inputs', False),
           optimize=False)
    return read_manifest(work_dir)


def read_manifest(path_or_dir: str) -> dict:
    """The manifest of a work dir (or the file itself), with a clear error when missing."""
    path = (osp.join(path_or_dir, MANIFEST_NAME) if osp.isdir(path_or_dir) else path_or_dir)
    if not osp.isfile(path):
        raise FileNotFoundError(f'{path} not found: export the graphs first with mmdeploy\'s '
                                'tools/deploy.py (or tools/deployment/deploy.py) DEPLOY_CFG '
                                'MODEL_CFG CKPT IMG --work-dir DIR; it writes the three graphs '
                                f'and {MANIFEST_NAME}')
    with open(path) as f:
        return json.load(f)
