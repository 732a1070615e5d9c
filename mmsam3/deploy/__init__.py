"""SAM 3 deployment: an mmdeploy codebase (``mmsam3``) whose export writes three ONNX graphs (a
fourth, the interactive decoder, for a model with the interactive head),
ONNX Runtime / TensorRT 10 runners, a text-feature cache and a static TensorRT op audit (see
docs/deployment.md).

A deploy config names this package in ``codebase_config=dict(type='mmsam3',
task='InstanceSegmentation', module=['mmsam3.deploy'])``; importing it registers the codebase
and its task processor, the rewriters SAM 3 needs, and the TensorRT 10 backend manager.
"""
from . import onnx_rewriters  # noqa: F401  (registration)
from .deployed_sam3 import DeployedSAM3, resolve_graph_files
from .export_graphs import (ALL_GRAPH_NAMES, GRAPH_NAMES, INTERACTIVE_GRAPH,
                            InteractiveDecoderGraph, PromptDecoderGraph, TextTowerGraph,
                            VisionTowerGraph)
from .graph_exporter import (MANIFEST_NAME, export_sam3_graphs, load_deploy_cfg, read_manifest,
                             sam3_deploy_settings, write_graph_set)
from .mmdeploy_codebase import SAM3Codebase
from .mmdeploy_tensorrt10 import TensorRT10Manager, TensorRT10Wrapper
from .model_fingerprint import weights_fingerprint
from .sam3_task import SAM3Task
from .tensorrt_op_audit import AuditReport, audit_onnx, format_table
from .text_feature_cache import TextFeatureCache, text_tower_fingerprint

__all__ = [
    'GRAPH_NAMES', 'ALL_GRAPH_NAMES', 'INTERACTIVE_GRAPH', 'VisionTowerGraph', 'TextTowerGraph',
    'PromptDecoderGraph', 'InteractiveDecoderGraph', 'MANIFEST_NAME',
    'export_sam3_graphs', 'write_graph_set', 'load_deploy_cfg', 'read_manifest',
    'sam3_deploy_settings', 'SAM3Codebase', 'SAM3Task', 'TensorRT10Manager',
    'TensorRT10Wrapper', 'weights_fingerprint', 'AuditReport', 'audit_onnx', 'format_table',
    'DeployedSAM3', 'resolve_graph_files', 'TextFeatureCache', 'text_tower_fingerprint'
]
