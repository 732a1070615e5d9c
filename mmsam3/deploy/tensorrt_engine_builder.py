"""Build TensorRT 10 engines from the exported graphs (on the device that will run them).

Written against TensorRT 10's documented Python API (``trt.Builder`` / ``OnnxParser`` /
``IOptimizationProfile`` / ``build_serialized_network``); nothing here runs without a CUDA device
and TensorRT, which this project's machines do not have. ``tools/deployment/build_trt_engines.sh``
does the same with ``trtexec``.

FP16: the ``LayerNormalization`` and ``Softmax`` layers are pinned to FP32
(``OBEY_PRECISION_CONSTRAINTS``); their node names are listed in the manifest
(``fp32_layers``) at export so ``trtexec --layerPrecisions`` can pin the same ones.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

__all__ = ['tensorrt_available', 'fp32_layer_names', 'trt_profiles', 'profile_from_signature',
           'build_engine', 'build_engines']

FP32_OP_TYPES = ('LayerNormalization', 'Softmax')


def tensorrt_available() -> Tuple[bool, str]:
    """Whether engines can be built here, and why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, 'the tensorrt package is not installed'
    import torch
    if not torch.cuda.is_available():
        return False, 'TensorRT needs a CUDA device to parse and build'
    return True, ''


def fp32_layer_names(onnx_path: str, op_types: Sequence[str] = FP32_OP_TYPES) -> List[str]:
    """Names of the ONNX nodes (= TensorRT layer names) that should stay FP32 in FP16 builds."""
    import onnx
    graph = onnx.load(onnx_path, load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in op_types and n.name]


def trt_profiles(deploy_cfg,
                 graph_names: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, dict]]:
    """``{graph: {input: {min_shape, opt_shape, max_shape}}}`` from
    ``backend_config.model_inputs`` (one entry per graph, in vision / text / decoder /
    interactive decoder order). ``graph_names``: the graphs being exported (default: the three
    concept graphs); a config may profile the interactive decoder too, and must when it is
    exported."""
    from .export_graphs import ALL_GRAPH_NAMES, GRAPH_NAMES, INTERACTIVE_GRAPH
    names = tuple(graph_names or GRAPH_NAMES)
    model_inputs = deploy_cfg.backend_config.get('model_inputs') or []
    if len(model_inputs) not in (len(GRAPH_NAMES), len(ALL_GRAPH_NAMES)) or \
            len(model_inputs) < len(names):
        hint = (f' (this model has the interactive head: add a fourth entry for '
                f'{INTERACTIVE_GRAPH}, as configs/deploy/'
                'instance-seg-interactive_tensorrt_static-*.py do)'
                if INTERACTIVE_GRAPH in names else '')
        raise ValueError(f'backend_config.model_inputs needs {len(names)} entries (one '
                         f'profile per graph: {names}), got {len(model_inputs)}{hint}')
    return {g: {k: {s: list(v[s]) for s in ('min_shape', 'opt_shape', 'max_shape')}
                for k, v in entry['input_shapes'].items()}
            for g, entry in zip(ALL_GRAPH_NAMES, model_inputs) if g in names}


def profile_from_signature(inputs: Sequence[dict], limits: Dict[str, int],
                           opt_prompts: int = 4, opt_points: int = 3) -> Dict[str, dict]:
    """A graph's TensorRT profile from its manifest inputs: static dims as they are, a named
    dynamic axis from 1 to its limit (``num_prompts`` optimised for ``opt_prompts``, boxes for
    one, points for ``opt_points``: two clicks and the padding point), as the hand-written
    profiles of configs/deploy/*tensorrt* do."""
    opt = dict(num_prompts=min(opt_prompts, limits['num_prompts']), num_boxes=1,
               num_points=min(opt_points, limits.get('num_points', opt_points)))
    profile = {}
    for spec in inputs:
        dims = spec['shape']
        profile[spec['name']] = dict(
            min_shape=[1 if isinstance(d, str) else d for d in dims],
            opt_shape=[opt[d] if isinstance(d, str) else d for d in dims],
            max_shape=[limits[d] if isinstance(d, str) else d for d in dims])
    return profile


def build_engine(onnx_path: str, engine_path: str, profile: Dict[str, dict], fp16: bool = False,
                 workspace: int = 1 << 32, fp32_layers: Sequence[str] = ()) -> str:
    """Parse ``onnx_path`` (external data beside it is read), build and write ``engine_path``."""
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(onnx_path):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise RuntimeError(f'TensorRT could not parse {onnx_path}: {errors}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        keep = set(fp32_layers)
        for i in range(network.num_layers):
            layer = network.get_layer(i)
            if layer.name in keep or layer.type in (trt.LayerType.NORMALIZATION,
                                                    trt.LayerType.SOFTMAX):
                layer.precision = trt.float32
                for j in range(layer.num_outputs):
                    layer.set_output_type(j, trt.float32)
    opt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        opt_profile.set_shape(name, shapes['min_shape'], shapes['opt_shape'],
                              shapes['max_shape'])
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f'TensorRT failed to build {onnx_path}')
    with open(engine_path, 'wb') as f:
        f.write(serialized)
    return engine_path


def _profile_entries(onnx_files: Sequence[str], model_inputs: Sequence[dict]) -> List[dict]:
    """``model_inputs`` entry of each ONNX file: in order when there is one entry per file;
    otherwise SAM 3's graphs by name (entry ``i`` profiles graph ``ALL_GRAPH_NAMES[i]``, so a
    four-entry interactive config also serves a concept-only export)."""
    from .export_graphs import ALL_GRAPH_NAMES
    stems = [osp.splitext(osp.basename(f))[0] for f in onnx_files]
    if len(model_inputs) != len(onnx_files) and all(s in ALL_GRAPH_NAMES for s in stems):
        need = max(ALL_GRAPH_NAMES.index(s) for s in stems) + 1
        if len(model_inputs) >= need:
            return [model_inputs[ALL_GRAPH_NAMES.index(s)] for s in stems]
        raise ValueError(f'backend_config.model_inputs has {len(model_inputs)} entries for the '
                         f'graphs {stems}; give one optimisation profile per graph in the order '
                         f'{ALL_GRAPH_NAMES[:need]} (see configs/deploy/'
                         'instance-seg*_tensorrt_static-*.py)')
    if len(model_inputs) != len(onnx_files):
        raise ValueError(f'backend_config.model_inputs has {len(model_inputs)} entries for '
                         f'{len(onnx_files)} graphs ({[osp.basename(f) for f in onnx_files]}); '
                         'give one optimisation profile per graph, in that order (see '
                         'configs/deploy/instance-seg_tensorrt_static-*.py)')
    return list(model_inputs)


def build_engines(deploy_cfg, work_dir: str,
                  onnx_files: Optional[Sequence[str]] = None) -> List[str]:
    """One engine per ONNX file with ``backend_config.model_inputs[i]`` (merged over
    ``common_config``), written to ``work_dir/<stem>.engine`` (or the entry's ``save_file``).

    ``onnx_files`` defaults to SAM 3's graphs in ``work_dir`` (vision, text, decoder order,
    then the interactive decoder when its file is there).
    FP16 engines keep the ``LayerNormalization`` / ``Softmax`` layers in FP32.
    """
    from .export_graphs import GRAPH_NAMES, INTERACTIVE_GRAPH
    if onnx_files is None:
        onnx_files = [osp.join(work_dir, f'{g}.onnx') for g in GRAPH_NAMES]
        interactive = osp.join(work_dir, f'{INTERACTIVE_GRAPH}.onnx')
        if osp.isfile(interactive):
            onnx_files.append(interactive)
        missing = [f for f in onnx_files if not osp.isfile(f)]
        if missing:
            raise FileNotFoundError(f'graphs not found: {missing}; export them first')
    common = dict(deploy_cfg.backend_config.get('common_config', {}))
    model_inputs = deploy_cfg.backend_config.get('model_inputs') or []
    entries = _profile_entries(onnx_files, model_inputs)
    paths = []
    for onnx_path, entry in zip(onnx_files, entries):
        params = dict(common, **entry)
        stem = osp.splitext(osp.basename(onnx_path))[0]
        fp16 = bool(params.get('fp16_mode', False))
        paths.append(
            build_engine(onnx_path, osp.join(work_dir, params.get('save_file', f'{stem}.engine')),
                         params['input_shapes'], fp16=fp16,
                         workspace=int(params.get('max_workspace_size', 1 << 32)),
                         fp32_layers=fp32_layer_names(onnx_path) if fp16 else ()))
    return paths
