"""SAM 3 deployment: three ONNX graphs through mmdeploy, ONNX Runtime / TensorRT 10 runners, a
text-feature cache and a static TensorRT op audit (see docs/deployment.md).

Importing this package registers the mmdeploy rewriters SAM 3 needs; a deploy config names it in
``codebase_config=dict(type='mmdet', task=..., module=['mmsam3.deploy'])``.
"""
from . import onnx_rewriters  # noqa: F401  (registration)
from .deployed_sam3 import DeployedSAM3, resolve_graph_files
from .export_graphs import GRAPH_NAMES, PromptDecoderGraph, TextTowerGraph, VisionTowerGraph
from .graph_exporter import (MANIFEST_NAME, export_sam3_graphs, load_deploy_cfg, read_manifest,
                             sam3_deploy_settings)
from .model_fingerprint import weights_fingerprint
from .tensorrt_op_audit import AuditReport, audit_onnx, format_table
from .text_feature_cache import TextFeatureCache, text_tower_fingerprint

__all__ = [
    'GRAPH_NAMES', 'VisionTowerGraph', 'TextTowerGraph', 'PromptDecoderGraph', 'MANIFEST_NAME',
    'export_sam3_graphs', 'load_deploy_cfg', 'read_manifest', 'sam3_deploy_settings',
    'weights_fingerprint', 'AuditReport', 'audit_onnx', 'format_table', 'DeployedSAM3',
    'resolve_graph_files', 'TextFeatureCache', 'text_tower_fingerprint'
]
