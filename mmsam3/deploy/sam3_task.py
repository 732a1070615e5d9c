"""SAM 3's mmdeploy task processor: what mmdeploy's tools and ``mmdeploy.apis`` call.

* ``build_pytorch_model``: the ``SAM3`` detector (mmdeploy's base implementation); exported by
  ``torch2onnx`` as three graphs (:mod:`mmsam3.deploy.graph_exporter`).
* ``create_input``: images through the model config's test pipeline, each with the deploy
  config's phrases (``codebase_config.sam3.phrases``, default ``['object']``) and optional
  exemplar boxes (``codebase_config.sam3.boxes``, ``[x1, y1, x2, y2]`` in image pixels). Returns
  ``(data, inputs)`` as mmdet's task does: ``data`` is what ``test_step`` takes.
* ``build_backend_model``: :class:`~mmsam3.deploy.DeployedSAM3` from the manifest / graph files
  (ONNX Runtime) or engines (TensorRT 10), with the model config's tokenizer and head.
* ``visualize``: mmdet's ``DetLocalVisualizer`` with the phrases as class names.

The deploy config's image size must be the model config's test size: the graphs are static.
"""
import copy
from typing import Callable, Dict, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmdeploy.codebase.base import BaseTask
from mmdeploy.utils import (Task, get_backend, get_codebase_config, get_input_shape,
                            get_partition_config)
from mmengine.model import BaseDataPreprocessor

from .mmdeploy_codebase import SAM3_TASKS

__all__ = ['SAM3Task', 'DEFAULT_PHRASES', 'sam3_task_processor']

DEFAULT_PHRASES = ('object', )
_LOADERS = ('LoadImageFromFile', 'mmdet.LoadImageFromFile', 'LoadImageFromNDArray',
            'mmdet.LoadImageFromNDArray')


def _test_pipeline(model_cfg) -> list:
    dataloader = model_cfg.test_dataloader
    dataset = dataloader['dataset']
    while 'pipeline' not in dataset and 'dataset' in dataset:  # wrapped datasets
        dataset = dataset['dataset']
    return [copy.deepcopy(t) for t in dataset['pipeline']
            if t['type'] not in ('LoadAnnotations', 'mmdet.LoadAnnotations')]


def _pipeline_scale(pipeline) -> Optional[Tuple[int, int]]:
    """``(w, h)`` of the first fixed-size ``Resize`` of the test pipeline, if any."""
    for t in pipeline:
        if t['type'].split('.')[-1] == 'Resize' and t.get('scale') is not None and \
                not t.get('keep_ratio', False):
            scale = t['scale']
            scale = (scale, scale) if isinstance(scale, int) else tuple(scale)
            return int(scale[0]), int(scale[1])
    return None


def sam3_task_processor(model_cfg, deploy_cfg, device: str) -> 'SAM3Task':
    """mmdeploy's ``build_task_processor`` for SAM 3, except that a TensorRT deploy config is
    accepted with a CPU device: exporting its graphs (traced on the CPU anyway) on a host
    without a GPU, or checking them on ONNX Runtime. Engines still need ``cuda:N``."""
    from mmdeploy.apis import build_task_processor
    from mmdeploy.codebase import get_codebase_class, import_codebase
    from mmdeploy.utils import get_codebase
    if get_backend(deploy_cfg).value == 'tensorrt' and not str(device).startswith('cuda'):
        codebase = get_codebase(deploy_cfg)
        import_codebase(codebase, get_codebase_config(deploy_cfg).get('module', []))
        return get_codebase_class(codebase).build_task_processor(model_cfg, deploy_cfg, device)
    return build_task_processor(model_cfg, deploy_cfg, device)


@SAM3_TASKS.register_module(Task.INSTANCE_SEGMENTATION.value)
class SAM3Task(BaseTask):
    """SAM 3 for mmdeploy (see the module docstring)."""

    NO_PARTITION = ('SAM 3 needs no partition_config: its export writes the vision tower, text '
                    'tower and prompt decoder graphs itself (mmsam3.deploy.graph_exporter); '
                    'remove partition_config from the deploy config')

    def __init__(self, model_cfg, deploy_cfg, device: str, experiment_name: str = 'SAM3Task'):
        super().__init__(model_cfg, deploy_cfg, device, experiment_name)
        self.check_input_size()
        if get_partition_config(deploy_cfg) is not None:
            raise ValueError(self.NO_PARTITION)

    # ------------------------------------------------------------------------------------------
    def check_input_size(self) -> None:
        """The deploy config's static size must be the size the test pipeline makes."""
        shape = get_input_shape(self.deploy_cfg)
        scale = _pipeline_scale(_test_pipeline(self.model_cfg)) if \
            'test_dataloader' in self.model_cfg else None
        if shape is not None and scale is not None and tuple(shape) != scale:
            w, h = scale
            backend = get_backend(self.deploy_cfg).value
            raise ValueError(
                f'deploy config is static at {shape[0]}x{shape[1]} but the model config\'s test '
                f'pipeline resizes to {w}x{h}: use the deploy config of that size '
                f'(configs/deploy/instance-seg_{backend}_static-{w}x{h}.py, or write one with '
                f'onnx_config.input_shape=[{w}, {h}])')

    @property
    def sam3_cfg(self) -> dict:
        return dict(get_codebase_config(self.deploy_cfg).get('sam3', {}))

    @property
    def phrases(self) -> list:
        return list(self.sam3_cfg.get('phrases') or DEFAULT_PHRASES)

    # ------------------------------------------------------------------------------------------
    def build_backend_model(self,
                            model_files: Sequence[str] = None,
                            data_preprocessor_updater: Optional[Callable] = None,
                            **kwargs) -> torch.nn.Module:
        """:class:`DeployedSAM3` from ``sam3_graphs.json`` / graph files / engines."""
        from .deployed_sam3 import DeployedSAM3
        files = [model_files] if isinstance(model_files, str) else list(model_files)
        # A TensorRT config's ONNX graphs (exported on a CPU host) are checked on ONNX Runtime.
        backend = 'tensorrt' if any(f.endswith('.engine') for f in files) else 'onnxruntime'
        model_cfg = copy.deepcopy(self.model_cfg)
        if data_preprocessor_updater is not None:
            model_cfg.model.data_preprocessor = data_preprocessor_updater(
                model_cfg.model.data_preprocessor)
        model = DeployedSAM3(model_cfg, files, backend=backend, device=self.device,
                             **kwargs)
        return model.to(self.device).eval()

    def create_input(self,
                     imgs: Union[str, np.ndarray, Sequence],
                     input_shape: Optional[Sequence[int]] = None,
                     data_preprocessor: Optional[BaseDataPreprocessor] = None,
                     **kwargs) -> Tuple[Dict, torch.Tensor]:
        """``(data, inputs)``: the images with the deploy config's phrases (and boxes)."""
        from mmcv.transforms import Compose
        from mmengine.dataset import pseudo_collate
        if isinstance(imgs, (list, tuple)):
            imgs = list(imgs)
        else:
            imgs = [imgs]
        pipeline = _test_pipeline(self.model_cfg)
        scale = _pipeline_scale(pipeline)
        if input_shape is not None and scale is not None and tuple(input_shape) != scale:
            raise ValueError(f'input_shape {tuple(input_shape)} differs from the test pipeline '
                             f'size {scale}; the graphs are static at the pipeline size')
        if isinstance(imgs[0], np.ndarray):
            pipeline[0] = dict(pipeline[0], type='LoadImageFromNDArray')
        else:
            pipeline[0] = dict(pipeline[0], type='LoadImageFromFile')
        transform = Compose(pipeline)
        phrases = self.phrases
        boxes = self.sam3_cfg.get('boxes')
        items = []
        for i, img in enumerate(imgs):
            item = dict(img=img) if isinstance(img, np.ndarray) else dict(img_path=img)
            item.update(img_id=i, text=list(phrases))
            data = transform(item)
            if boxes:
                sample = data['data_samples']
                sx, sy = sample.metainfo.get('scale_factor', (1.0, 1.0))
                scaled = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4) * \
                    torch.tensor([sx, sy, sx, sy])
                labels = torch.ones(len(scaled), dtype=torch.long)
                sample.set_metainfo(dict(prompt_boxes=[scaled] * len(phrases),
                                         prompt_box_labels=[labels] * len(phrases)))
            items.append(data)
        data = pseudo_collate(items)
        if data_preprocessor is not None:
            data = data_preprocessor(data, False)
            return data, data['inputs']
        return data, BaseTask.get_tensor_from_input(data)

    def visualize(self,
                  image: Union[str, np.ndarray],
                  result,
                  output_file: str,
                  window_name: str = '',
                  show_result: bool = False,
                  draw_gt: bool = False,
                  **kwargs):
        """Draw the detections with their phrases as class names."""
        import os.path as osp
        save_dir, save_name = osp.split(output_file)
        visualizer = self.get_visualizer(window_name, save_dir)
        texts = result.metainfo.get('texts') or self.phrases
        visualizer.dataset_meta = dict(classes=tuple(texts), palette='random')
        if isinstance(image, str):
            image = mmcv.imread(image, channel_order='rgb')
        visualizer.add_datasample(osp.splitext(save_name)[0], image, data_sample=result,
                                  draw_gt=draw_gt, show=show_result, out_file=output_file,
                                  pred_score_thr=kwargs.get('score_thr', 0.3))

    @staticmethod
    def get_partition_cfg(partition_type: str, **kwargs) -> Dict:
        raise NotImplementedError(SAM3Task.NO_PARTITION)

    def get_preprocess(self, *args, **kwargs) -> list:
        """The test pipeline (image loading first), for mmdeploy's SDK description
        (``tools/deploy.py --dump-info``). The SDK cannot run SAM 3: see docs/deployment.md."""
        pipeline = _test_pipeline(self.model_cfg)
        pipeline[0] = dict(pipeline[0], type='LoadImageFromFile')
        return pipeline

    def get_postprocess(self, *args, **kwargs) -> Dict:
        """``SAM3Head.predict_by_feat`` with the model's ``test_cfg`` (Python only)."""
        model = self.model_cfg.model
        return dict(type='SAM3Head', params=dict(model.get('test_cfg') or {}))

    def get_model_name(self, *args, **kwargs) -> str:
        return 'sam3'
