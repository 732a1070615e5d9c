"""The static TensorRT 10 op audit: the exported tiny graphs pass, crafted bad graphs fail."""
import os.path as osp

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mmsam3.deploy import GRAPH_NAMES, audit_onnx, format_table


def _model(nodes, inputs, outputs, inits=(), opset=17):
    graph = helper.make_graph(nodes, 'crafted', inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])


def _f(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def test_tiny_graphs_pass(tiny_deployment):
    reports = [audit_onnx(osp.join(tiny_deployment.work_dir, f'{g}.onnx')) for g in GRAPH_NAMES]
    table = format_table(reports)
    assert all(r.ok for r in reports), table
    ops = set().union(*[r.rows for r in reports])
    assert 'LayerNormalization' in ops  # fused, not mmdeploy's ReduceMean / Pow decomposition
    assert 'Pow' not in ops
    assert 'PASS' in table and 'vision_tower.onnx' in table


def test_a_crafted_bad_graph_fails_with_every_reason(tmp_path):
    axes = helper.make_tensor_value_info('axes', TensorProto.INT64, [1])
    idx = helper.make_tensor_value_info('idx', TensorProto.INT64, [4, 4])
    nodes = [
        # Squeeze axes from a graph input: TensorRT 10.3 needs them constant.
        helper.make_node('Squeeze', ['x', 'axes'], ['sq']),
        # TopK with k >= 3840.
        helper.make_node('TopK', ['x', 'k'], ['tv', 'ti']),
        # Cubic resize.
        helper.make_node('Resize', ['x4', '', 'scales'], ['rs'], mode='cubic'),
        # An INT64 MatMul: TensorRT's MatMul is floating point only.
        helper.make_node('MatMul', ['idx', 'idx'], ['mm']),
        # An unsupported operator and a custom-domain op.
        helper.make_node('Unique', ['x'], ['uq']),
        helper.make_node('ScaledDotProductAttentionTRT', ['x'], ['cust'], domain='mmdeploy'),
    ]
    inits = [numpy_helper.from_array(np.array([5000], np.int64), 'k'),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), 'scales')]
    model = _model(nodes, [_f('x', [1, 8000]), _f('x4', [1, 1, 4, 4]), axes, idx],
                   [_f('sq', None), _f('tv', None), _f('rs', None),
                    helper.make_tensor_value_info('mm', TensorProto.INT64, None),
                    _f('uq', None), _f('cust', None)], inits)
    path = str(tmp_path / 'bad.onnx')
    onnx.save(model, path)
    report = audit_onnx(path)
    assert not report.ok
    text = '\n'.join(report.violations)
    for needle in ('Squeeze', 'computed at run time', 'TopK', 'k=5000', "mode 'cubic'",
                   'MatMul', 'INT64', 'Unique: ', 'custom domain'):
        assert needle in text, (needle, text)
    assert 'FAIL' in format_table([report])


def test_complex_values_sequences_and_the_opset_are_checked():
    seq = helper.make_tensor_sequence_value_info('s', TensorProto.FLOAT, None)
    nodes = [helper.make_node('SequenceConstruct', ['x'], ['s'])]
    report = audit_onnx(_model(nodes, [_f('x', [2])], [seq], opset=21))
    text = '\n'.join(report.violations)
    assert 'SequenceConstruct' in text and 'is a sequence' in text and 'opset 21' in text
    comp = numpy_helper.from_array(np.zeros(2, np.complex64), 'c')
    report = audit_onnx(_model([helper.make_node('Identity', ['c'], ['y'])], [],
                               [_f('y', [2])], [comp]))
    assert any('complex' in v for v in report.violations)


def test_constant_axes_and_good_resize_pass():
    nodes = [helper.make_node('Constant', [], ['ax'],
                              value=numpy_helper.from_array(np.array([0], np.int64))),
             helper.make_node('Unsqueeze', ['x', 'ax'], ['u']),
             helper.make_node('ReduceSum', ['u', 'ax'], ['r'], keepdims=1),
             helper.make_node('Resize', ['x4', '', 'scales'], ['rs'], mode='linear',
                              coordinate_transformation_mode='pytorch_half_pixel')]
    inits = [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), 'scales')]
    report = audit_onnx(_model(nodes, [_f('x', [3]), _f('x4', [1, 1, 4, 4])],
                               [_f('r', None), _f('rs', None)], inits))
    assert report.ok, report.violations


def test_cli_exit_code(tiny_deployment, tmp_path, capsys):
    from deploy_test_utils import load_tool
    tool = load_tool('audit_tensorrt_ops')
    good = [osp.join(tiny_deployment.work_dir, f'{g}.onnx') for g in GRAPH_NAMES]
    assert tool.main(good + ['--json', str(tmp_path / 'audit.json')]) == 0
    assert osp.isfile(tmp_path / 'audit.json')
    bad = str(tmp_path / 'bad.onnx')
    onnx.save(_model([helper.make_node('Unique', ['x'], ['y'])], [_f('x', [3])],
                     [_f('y', None)]), bad)
    assert tool.main([bad]) == 1
    assert 'VIOLATION' in capsys.readouterr().out
    with pytest.raises(FileNotFoundError):
        audit_onnx(str(tmp_path / 'missing.onnx'))
