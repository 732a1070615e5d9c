"""The ``mmsam3`` codebase of mmdeploy, registered from outside mmdeploy.

A deploy config with ``codebase_config=dict(type='mmsam3', task='InstanceSegmentation',
module=['mmsam3.deploy'])`` makes mmdeploy add ``MMSAM3`` to its ``Codebase`` enum (an unknown
type is added at run time), import ``mmsam3.deploy`` (the config's ``module``, in every process
that builds a task processor, the spawned export process included), and build this class from
its ``CODEBASE`` registry. Its task registry holds :class:`~mmsam3.deploy.sam3_task.SAM3Task`
under mmdeploy's ``InstanceSegmentation`` task value (mmdeploy's ``Task`` enum is fixed).
"""
from mmdeploy.codebase.base import CODEBASE, MMCodebase
from mmengine.registry import Registry

__all__ = ['SAM3_TASKS', 'SAM3Codebase']

SAM3_TASKS = Registry('mmsam3_tasks', locations=['mmsam3.deploy.sam3_task'])


@CODEBASE.register_module('mmsam3')
class SAM3Codebase(MMCodebase):
    """SAM 3 (text / exemplar-prompted detection and segmentation) in mmdeploy."""

    task_registry = SAM3_TASKS

    @classmethod
    def register_deploy_modules(cls):
        """The rewriters, the task processor and the TensorRT 10 backend."""
        from . import mmdeploy_tensorrt10, onnx_rewriters, sam3_task  # noqa: F401

    @classmethod
    def register_all_modules(cls):
        """mmdet's modules and SAM 3's (models, datasets, transforms, metrics), then ours."""
        from mmdet.utils.setup_env import register_all_modules

        import mmsam3  # noqa: F401  (registers SAM 3 in mmdet's registries)
        register_all_modules(init_default_scope=False)
        cls.register_deploy_modules()
