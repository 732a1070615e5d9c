"""Static audit of ONNX graphs against TensorRT 10.x's ONNX parser (no GPU needed).

TensorRT cannot parse or build a network without a CUDA device, so this checks what the
onnx-tensorrt parser of TensorRT 10.0-10.3 documents (``docs/operators.md`` of the 10.x branches:
the operator matrix, the supported types per operator and the restrictions column), on the graph
as it is written:

* every node is in the default ONNX domain (a custom domain needs a plugin) and its operator is
  supported (no complex, sequence, optional, string, DFT / STFT, ``Unique`` ... ops);
* the opset lies in 9..20;
* axes of ``Reduce*`` / ``Slice`` / ``Squeeze`` / ``Unsqueeze`` / ``Pad`` and ``CumSum``'s axis
  are constants (initializers or ``Constant`` outputs; dynamic ``Squeeze`` axes only came in
  10.7);
* ``TopK``: constant ``k < 3840``, ``sorted=1``; ``Resize``: nearest / linear, supported
  coordinate transformations, no antialiasing; ``GridSample`` 4-D; ``ScatterND`` without
  reduction; ``LayerNormalization`` uses only ``Y``; both ``If`` branches give outputs of the
  same ranks; ``Dropout`` not in training mode;
* every input of a node has a type the operator supports in TensorRT (e.g. an INT64 tensor
  reaching ``MatMul`` / ``Softmax`` / ``Sqrt``, which TensorRT only runs in floating point), and
  no tensor is complex, a sequence or an optional.

``audit_onnx(path)`` returns an :class:`AuditReport` (``rows``: one per operator type with its
count and the violations found; ``ok``); ``format_table`` prints it.
"""
import os.path as osp
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Set, Union

__all__ = ['TRT_OPSET_RANGE', 'AuditReport', 'audit_onnx', 'format_table']

TRT_OPSET_RANGE = (9, 20)
TOPK_MAX_K = 3840

_F = ('FP32', 'FP16', 'BF16')
_FI = _F + ('INT32', 'INT64')
_FIB = _FI + ('BOOL', )
_BOOL = ('BOOL', )

# Supported operators and the input types TensorRT 10.x runs them with (onnx-tensorrt
# docs/operators.md, 10.x). Quantized types are left out: these graphs are not quantized.
_SUPPORTED_TYPES: Dict[str, tuple] = {}
for _names, _types in (
    (('Acos', 'Acosh', 'Asin', 'Asinh', 'Atan', 'Atanh', 'AveragePool', 'BatchNormalization',
      'Ceil', 'Celu', 'Clip', 'Conv', 'ConvTranspose', 'Cos', 'Cosh', 'CumSum', 'Dropout',
      'Einsum', 'Elu', 'Erf', 'Exp', 'Floor', 'Gemm', 'GlobalAveragePool', 'GlobalLpPool',
      'GlobalMaxPool', 'GroupNormalization', 'GRU', 'HardSigmoid', 'HardSwish', 'Hardmax',
      'ImageScaler', 'InstanceNormalization', 'IsInf', 'LayerNormalization', 'LeakyRelu', 'Log',
      'LogSoftmax', 'LRN', 'LSTM', 'LpNormalization', 'LpPool', 'MatMul', 'MaxPool',
      'MeanVarianceNormalization', 'ParametricSoftplus', 'Pow', 'PRelu', 'QuantizeLinear',
      'RandomNormal', 'RandomNormalLike', 'RandomUniform', 'RandomUniformLike', 'Reciprocal',
      'Resize', 'RNN', 'Round', 'ScaledTanh', 'Scan', 'Selu', 'Sigmoid', 'Sin', 'Sinh',
      'Softmax', 'Softplus', 'Softsign', 'Sqrt', 'Tan', 'Tanh', 'ThresholdedRelu', 'Upsample'),
     _F),
    (('DeformConv', 'GridSample', 'Mish', 'NonMaxSuppression', 'NonZero', 'RoiAlign'),
     ('FP32', 'FP16')),
    (('Abs', 'Add', 'ArgMax', 'ArgMin', 'DepthToSpace', 'Div', 'Equal', 'Gelu', 'Greater',
      'GreaterOrEqual', 'IsNaN', 'Less', 'LessOrEqual', 'Max', 'Mean', 'Min', 'Mod', 'Mul',
      'Neg', 'Pad', 'Range', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp',
      'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceProd', 'ReduceSum', 'ReduceSumSquare',
      'Relu', 'Scatter', 'ScatterElements', 'ScatterND', 'Shrink', 'Sign', 'SpaceToDepth',
      'Sub', 'Sum', 'TopK'), _FI),
    (('Concat', 'Constant', 'ConstantOfShape', 'Expand', 'EyeLike', 'Flatten', 'Gather',
      'GatherElements', 'GatherND', 'Identity', 'If', 'Loop', 'OneHot', 'Reshape',
      'ReverseSequence', 'Shape', 'Size', 'Slice', 'Split', 'Squeeze', 'Tile', 'Transpose',
      'Trilu', 'Unsqueeze', 'Where'), _FIB),
    (('Cast', 'CastLike'), _FIB + ('UINT8', )),
    (('And', 'Or', 'Xor', 'Not'), _BOOL),
    (('DequantizeLinear', ), ('INT8', 'FP8', 'INT4')),
):
    for _name in _names:
        _SUPPORTED_TYPES[_name] = _types

# Inputs whose type TensorRT does not constrain the way the operator's data input is (shape
# tensors, indices, conditions, ...): only the listed input positions are type-checked.
_TYPED_INPUTS: Dict[str, tuple] = {
    'Reshape': (0, ), 'Expand': (0, ), 'Tile': (0, ), 'Slice': (0, ), 'Squeeze': (0, ),
    'Unsqueeze': (0, ), 'Gather': (0, ), 'GatherElements': (0, ), 'GatherND': (0, ),
    'ScatterND': (0, 2), 'ScatterElements': (0, 2), 'Scatter': (0, 2), 'Pad': (0, ),
    'Resize': (0, ), 'TopK': (0, ), 'CumSum': (0, ), 'Where': (1, 2), 'If': (0, ),
    'Loop': (), 'Split': (0, ), 'OneHot': (), 'ConstantOfShape': (), 'Range': (0, 1, 2),
    'Clip': (0, ), 'ReduceL1': (0, ), 'ReduceL2': (0, ), 'ReduceLogSum': (0, ),
    'ReduceLogSumExp': (0, ), 'ReduceMax': (0, ), 'ReduceMean': (0, ), 'ReduceMin': (0, ),
    'ReduceProd': (0, ), 'ReduceSum': (0, ), 'ReduceSumSquare': (0, ), 'Dropout': (0, ),
    'Trilu': (0, ), 'Cast': (0, ), 'CastLike': (0, ), 'GridSample': (0, 1),
    'RoiAlign': (0, 1), 'NonMaxSuppression': (0, 1),
}

_AXES_INPUT = {  # operator -> position of an axes-like input that must be constant
    'ReduceL1': 1, 'ReduceL2': 1, 'ReduceLogSum': 1, 'ReduceLogSumExp': 1, 'ReduceMax': 1,
    'ReduceMean': 1, 'ReduceMin': 1, 'ReduceProd': 1, 'ReduceSum': 1, 'ReduceSumSquare': 1,
    'Slice': 3, 'Squeeze': 1, 'Unsqueeze': 1, 'CumSum': 1, 'Pad': 3,
}

_RESIZE_MODES = {'nearest', 'linear'}
_RESIZE_COORD = {'half_pixel', 'pytorch_half_pixel', 'tf_half_pixel_for_nn', 'asymmetric',
                 'align_corners'}
_RESIZE_NEAREST = {'floor', 'ceil', 'round_prefer_floor', 'round_prefer_ceil'}

_ONNX_TO_TRT_TYPE = {1: 'FP32', 10: 'FP16', 16: 'BF16', 6: 'INT32', 7: 'INT64', 9: 'BOOL',
                     2: 'UINT8', 3: 'INT8', 11: 'DOUBLE', 14: 'COMPLEX64', 15: 'COMPLEX128',
                     8: 'STRING', 4: 'UINT16', 5: 'INT16', 12: 'UINT32', 13: 'UINT64'}


@dataclass
class AuditRow:
    """One operator type of a graph: how often it occurs and what is wrong with it."""
    op_type: str
    count: int = 0
    violations: List[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return 'ok' if not self.violations else 'VIOLATION'


@dataclass
class AuditReport:
    """Result of :func:`audit_onnx` for one file."""
    path: str
    opset: int
    rows: Dict[str, AuditRow] = field(default_factory=OrderedDict)
    graph_violations: List[str] = field(default_factory=list)

    @property
    def violations(self) -> List[str]:
        found = list(self.graph_violations)
        for row in self.rows.values():
            found += [f'{row.op_type}: {v}' for v in row.violations]
        return found

    @property
    def ok(self) -> bool:
        return not self.violations


def _tensor_kind(type_proto) -> Optional[str]:
    """'tensor' / 'sequence' / 'optional' / 'map' / ... of an ONNX TypeProto."""
    if type_proto is None:
        return None
    kind = type_proto.WhichOneof('value')
    return kind[:-len('_type')] if kind and kind.endswith('_type') else kind


class _GraphScope:
    """Names that are constant, and the types of every value, seen from one (sub)graph."""

    def __init__(self, graph, parent: Optional['_GraphScope'] = None):
        self.constants: Dict[str, object] = {} if parent is None else dict(parent.constants)
        self.types: Dict[str, object] = {} if parent is None else dict(parent.types)
        self.init_types: Dict[str, int] = {} if parent is None else dict(parent.init_types)
        for init in graph.initializer:
            self.constants[init.name] = init
            self.init_types[init.name] = init.data_type
        for value in list(graph.input) + list(graph.value_info) + list(graph.output):
            self.types[value.name] = value.type
        for node in graph.node:
            if node.op_type == 'Constant' and node.domain in ('', 'ai.onnx'):
                for attr in node.attribute:
                    if attr.name == 'value':
                        self.constants[node.output[0]] = attr.t

    def dtype(self, name: str) -> Optional[str]:
        """TensorRT-style type name of a value, or None when unknown."""
        if name in self.init_types:
            return _ONNX_TO_TRT_TYPE.get(self.init_types[name], str(self.init_types[name]))
        if name in self.constants and hasattr(self.constants[name], 'data_type'):
            return _ONNX_TO_TRT_TYPE.get(self.constants[name].data_type)
        tp = self.types.get(name)
        if tp is None or _tensor_kind(tp) != 'tensor':
            return None
        return _ONNX_TO_TRT_TYPE.get(tp.tensor_type.elem_type)

    def const_value(self, name: str):
        import onnx.numpy_helper as nh
        tensor = self.constants.get(name)
        if tensor is None:
            return None
        try:
            return nh.to_array(tensor)
        except Exception:  # external data not loaded: the value is not needed for the check
            return None


def _attrs(node) -> dict:
    import onnx.helper as oh
    return {a.name: oh.get_attribute_value(a) for a in node.attribute}


def _output_ranks(graph, scope: _GraphScope) -> List[Optional[int]]:
    ranks = []
    for out in graph.output:
        tp = out.type if out.type.WhichOneof('value') else scope.types.get(out.name)
        if tp is None or _tensor_kind(tp) != 'tensor' or not tp.tensor_type.HasField('shape'):
            ranks.append(None)
        else:
            ranks.append(len(tp.tensor_type.shape.dim))
    return ranks


def _check_node(node, scope: _GraphScope, opset: int, row: AuditRow, report: AuditReport):
    op = node.op_type
    where = node.name or (node.output[0] if node.output else op)
    if node.domain not in ('', 'ai.onnx'):
        row.violations.append(f'{where}: custom domain {node.domain!r} needs a TensorRT plugin')
        return
    if op not in _SUPPORTED_TYPES:
        row.violations.append(f'{where}: not supported by the TensorRT 10 ONNX parser')
        return
    attrs = _attrs(node)

    # Constant axes.
    pos = _AXES_INPUT.get(op)
    if pos is not None and len(node.input) > pos and node.input[pos]:
        if node.input[pos] not in scope.constants:
            row.violations.append(f'{where}: axes input {node.input[pos]!r} is computed at run '
                                  'time; TensorRT 10.3 needs a constant (initializer)')
    if op == 'TopK':
        if attrs.get('sorted', 1) != 1:
            row.violations.append(f'{where}: sorted=0 is not supported')
        k = scope.const_value(node.input[1]) if len(node.input) > 1 else attrs.get('k')
        if k is None:
            row.violations.append(f'{where}: k is computed at run time; it must be a constant '
                                  f'< {TOPK_MAX_K}')
        elif int(k.reshape(-1)[0] if hasattr(k, 'reshape') else k) >= TOPK_MAX_K:
            row.violations.append(f'{where}: k={int(k.reshape(-1)[0])} >= {TOPK_MAX_K}')
    elif op == 'Resize':
        mode = attrs.get('mode', b'nearest')
        mode = mode.decode() if isinstance(mode, bytes) else mode
        coord = attrs.get('coordinate_transformation_mode', b'half_pixel')
        coord = coord.decode() if isinstance(coord, bytes) else coord
        nearest = attrs.get('nearest_mode', b'round_prefer_floor')
        nearest = nearest.decode() if isinstance(nearest, bytes) else nearest
        if mode not in _RESIZE_MODES:
            row.violations.append(f'{where}: mode {mode!r} (only nearest / linear)')
        if coord not in _RESIZE_COORD:
            row.violations.append(f'{where}: coordinate_transformation_mode {coord!r}')
        if mode == 'nearest' and nearest not in _RESIZE_NEAREST:
            row.violations.append(f'{where}: nearest_mode {nearest!r}')
        if attrs.get('antialias', 0):
            row.violations.append(f'{where}: antialias is not supported')
        policy = attrs.get('keep_aspect_ratio_policy', b'stretch')
        policy = policy.decode() if isinstance(policy, bytes) else policy
        if policy != 'stretch':
            row.violations.append(f'{where}: keep_aspect_ratio_policy {policy!r}')
    elif op == 'GridSample':
        tp = scope.types.get(node.input[0])
        if tp is not None and tp.tensor_type.HasField('shape') and len(
                tp.tensor_type.shape.dim) != 4:
            row.violations.append(f'{where}: only 4-D input')
    elif op == 'ScatterND' and attrs.get('reduction', b'none') not in (b'none', 'none'):
        row.violations.append(f'{where}: reduction is not supported')
    elif op == 'LayerNormalization' and any(o for o in node.output[1:]):
        row.violations.append(f'{where}: only the first output Y is supported')
    elif op == 'Dropout' and len(node.input) > 2 and node.input[2]:
        value = scope.const_value(node.input[2])
        if value is None or bool(value):
            row.violations.append(f'{where}: training_mode must be a constant False')
    elif op == 'Constant':
        for name in ('sparse_value', 'value_string', 'value_strings'):
            if name in attrs:
                row.violations.append(f'{where}: attribute {name} is not supported')
    elif op == 'If':
        branches = {a.name: a.g for a in node.attribute if a.name in ('then_branch',
                                                                       'else_branch')}
        if len(branches) == 2:
            ranks = [_output_ranks(g, scope) for g in branches.values()]
            if ranks[0] != ranks[1] and None not in ranks[0] + ranks[1]:
                row.violations.append(f'{where}: branch output ranks differ {ranks[0]} vs '
                                      f'{ranks[1]}')

    # Types of the inputs TensorRT constrains.
    allowed = set(_SUPPORTED_TYPES[op])
    positions = _TYPED_INPUTS.get(op, tuple(range(len(node.input))))
    for i in positions:
        if i >= len(node.input) or not node.input[i]:
            continue
        dtype = scope.dtype(node.input[i])
        if dtype is not None and dtype not in allowed:
            row.violations.append(f'{where}: input {i} is {dtype}; TensorRT runs {op} on '
                                  f'{"/".join(sorted(allowed))} only')

    # Subgraphs (If / Loop / Scan bodies) are parsed too.
    for attr in node.attribute:
        if attr.type == attr.GRAPH:
            _audit_graph(attr.g, _GraphScope(attr.g, scope), opset, report)


def _audit_graph(graph, scope: _GraphScope, opset: int, report: AuditReport):
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        kind = _tensor_kind(value.type)
        if kind not in (None, 'tensor'):
            report.graph_violations.append(f'value {value.name!r} is a {kind}; TensorRT has no '
                                           'sequence / optional / map values')
        elif kind == 'tensor' and value.type.tensor_type.elem_type in (14, 15):
            report.graph_violations.append(f'value {value.name!r} is complex')
    for init in graph.initializer:
        if init.data_type in (14, 15):
            report.graph_violations.append(f'initializer {init.name!r} is complex')
        if init.data_type == 8:
            report.graph_violations.append(f'initializer {init.name!r} holds strings')
    for node in graph.node:
        row = report.rows.setdefault(node.op_type, AuditRow(node.op_type))
        row.count += 1
        _check_node(node, scope, opset, row, report)


def audit_onnx(model_or_path: Union[str, 'object']) -> AuditReport:
    """Audit one ONNX model (a path or a loaded ``ModelProto``); see the module docstring.

    Weights are not needed: a path is loaded without its external data and types come from
    ONNX shape inference.
    """
    import onnx
    if isinstance(model_or_path, str):
        if not osp.isfile(model_or_path):
            raise FileNotFoundError(f'ONNX file not found: {model_or_path}')
        model = onnx.load(model_or_path, load_external_data=False)
        path = model_or_path
    else:
        model, path = model_or_path, '<model>'
    opset = max([o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')] + [0])
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is only a source of types; the node checks still run
        inferred = model
    report = AuditReport(path=path, opset=opset)
    lo, hi = TRT_OPSET_RANGE
    if not lo <= opset <= hi:
        report.graph_violations.append(f'opset {opset} outside the {lo}..{hi} TensorRT 10 parses')
    _audit_graph(inferred.graph, _GraphScope(inferred.graph), opset, report)
    return report


def format_table(reports: Iterable[AuditReport]) -> str:
    """A plain-text table: one line per (file, operator type), then the violations."""
    reports = list(reports)
    lines = [f'{"graph":<28} {"op":<22} {"count":>6}  status']
    lines.append('-' * len(lines[0]) + '-' * 6)
    for rep in reports:
        name = osp.basename(rep.path)
        for row in sorted(rep.rows.values(), key=lambda r: r.op_type):
            lines.append(f'{name:<28} {row.op_type:<22} {row.count:>6}  {row.status}')
    for rep in reports:
        name = osp.basename(rep.path)
        verdict = 'PASS' if rep.ok else f'FAIL ({len(rep.violations)} violations)'
        lines.append(f'{name}: opset {rep.opset}, {sum(r.count for r in rep.rows.values())} '
                     f'nodes, {len(rep.rows)} op types: {verdict}')
        lines += [f'  - {v}' for v in rep.violations]
    return '\n'.join(lines)


def used_op_types(reports: Iterable[AuditReport]) -> Set[str]:
    """All operator types of the given reports."""
    return {op for rep in reports for op in rep.rows}
