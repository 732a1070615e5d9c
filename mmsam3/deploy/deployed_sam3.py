"""SAM 3 running from its exported graphs, as an mmdet detector.

:class:`DeployedSAM3` takes the same batches as ``SAM3`` (``DetDataSample``\\ s carrying
``texts`` / ``prompt_labels`` / ``prompt_boxes``) and returns the same ``pred_instances``, so
mmengine's ``Runner`` and mmdet's metrics evaluate it unchanged (``tools/deployment/test.py``).
Per image::

    image (1, 3, H, W) ─ vision_tower ─ feat_s4, feat_s8, feat_s16           (once per image)
    phrases ─ SAM3Tokenizer ─ text_tower ─ text_feats, text_mask           (once per distinct
              (or the TextFeatureCache)                                      phrase, in chunks)
    exemplar boxes ─ PromptBatch.pack_boxes (K >= 1, padding box if none)
    feats + text + boxes ─ prompt_decoder ─ logits, pred_boxes, presence,    (chunks of at most
                                           pred_masks, semantic_seg         max_prompts prompts)
    ─ SAM3Head.predict_by_feat (score = sigmoid(logit) * sigmoid(presence), thresholds, top-k,
      rescale, mask resize) ─ pred_instances

The tokenizer and the post-processing are the PyTorch model's own code, built from the model
config (no weights needed); the networks are the graph files.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from torch import Tensor

from ..models.dense_heads.sam3_head import SAM3Head
from ..models.utils.prompt_batch import PromptBatch, check_prompts_per_run
from .export_graphs import GRAPH_NAMES, OUTPUT_TO_HEAD_KEY
from .graph_exporter import MANIFEST_NAME, read_manifest
from .graph_runners import GraphRunner, OnnxRuntimeGraphRunner, TensorRTGraphRunner
from .text_feature_cache import TextFeatureCache

__all__ = ['DeployedSAM3', 'resolve_graph_files']

_SUFFIX = {'onnxruntime': '.onnx', 'tensorrt': '.engine'}


def resolve_graph_files(files: Union[str, Sequence[str]], backend: str) -> Tuple[dict, dict]:
    """``(manifest, {graph: path})`` from a work dir, the manifest, or a list of graph files
    (+ manifest).

    The manifest is the ``.json`` among ``files``, else ``sam3_graphs.json`` beside the first
    file; given alone, its graphs beside it are used (``<graph>.onnx``, or ``<graph>.engine``
    for TensorRT). A graph is recognised by its file name.
    """
    if backend not in _SUFFIX:
        raise ValueError(f'backend {backend!r}: choose from {sorted(_SUFFIX)}')
    files = [files] if isinstance(files, str) else list(files)
    if len(files) == 1 and osp.isdir(files[0]):
        root = files[0]
        files = [osp.join(root, f'{g}{_SUFFIX[backend]}') for g in GRAPH_NAMES
                 if osp.isfile(osp.join(root, f'{g}{_SUFFIX[backend]}'))]
        files.append(osp.join(root, MANIFEST_NAME))
    json_files = [f for f in files if f.endswith('.json')]
    manifest = read_manifest(json_files[0] if json_files else osp.join(
        osp.dirname(osp.abspath(files[0])), MANIFEST_NAME))
    if files == json_files:  # the manifest alone (what mmdeploy's tools pass): its graphs
        root = osp.dirname(osp.abspath(json_files[0]))
        files += [osp.join(root, f'{g}{_SUFFIX[backend]}') for g in GRAPH_NAMES
                  if g in manifest['graphs']]
    paths = {}
    for f in files:
        if f.endswith('.json'):
            continue
        stem, ext = osp.splitext(osp.basename(f))
        if stem not in GRAPH_NAMES or ext != _SUFFIX[backend]:
            raise ValueError(f'{f}: expected graph files named {{{",".join(GRAPH_NAMES)}}}'
                             f'{_SUFFIX[backend]} for the {backend} backend')
        if not osp.isfile(f):
            raise FileNotFoundError(f'graph file not found: {f}; export the graphs into its '
                                    'directory again (mmdeploy\'s tools/deploy.py or '
                                    'tools/deployment/deploy.py) or pass the files of one '
                                    'export')
        paths[stem] = f
    return manifest, paths


def count_time_as_backend(backend: str, func):
    """``func`` timed by mmdeploy's ``TimeCounter`` under the backend's name, the record
    mmdeploy's ``tools/profiler.py`` prints. mmdeploy's own wrappers register that name; ours
    shares their record (the counter looks its record up by name at each call)."""
    from mmdeploy.utils.timer import TimeCounter
    if backend == 'onnxruntime':
        import mmdeploy.backend.onnxruntime.wrapper  # noqa: F401  (registers the name first)
    record = TimeCounter.names.pop(backend, None)
    timed = TimeCounter.count_time(backend)(func)
    if record is not None:
        TimeCounter.names[backend] = record
    return timed


@MODELS.register_module()
class DeployedSAM3(BaseDetector):
    """SAM 3 from its ONNX graphs (ONNX Runtime) or TensorRT 10 engines.

    Args:
        model_cfg (str | Config): the PyTorch model's config (tokenizer, head ``test_cfg``,
            data preprocessor).
        backend_files (str | list[str]): ``sam3_graphs.json`` (what mmdeploy's tools pass), the
            export's work dir, or the graph files (``vision_tower`` and ``prompt_decoder`` are
            needed; ``text_tower`` unless every phrase is in ``text_cache``) and optionally the
            manifest.
        backend (str): ``'onnxruntime'`` or ``'tensorrt'``.
        text_cache (str | TextFeatureCache, optional): phrases served without the text graph.
        device (str): where outputs live (``'cpu'``; TensorRT needs ``'cuda:N'``).
        num_threads (int, optional): ONNX Runtime intra-op threads.
        prompts_per_run (int, optional): run the text and decoder graphs on at most this many
            prompts at a time (default: the export's ``max_prompts``). Memory grows with it:
            on ONNX Runtime (CPU) the 1008 px decoder materialises the fusion encoder's
            attention, about 1.8 GB per prompt, so 10 prompts in one run need ~18 GB; smaller
            runs cost the same time per prompt.
    """

    def __init__(self,
                 model_cfg: Union[str, Config],
                 backend_files: Union[str, Sequence[str]],
                 backend: str = 'onnxruntime',
                 text_cache: Optional[Union[str, TextFeatureCache]] = None,
                 device: str = 'cpu',
                 num_threads: Optional[int] = None,
                 prompts_per_run: Optional[int] = None,
                 init_cfg=None):
        if isinstance(model_cfg, str):
            model_cfg = Config.fromfile(model_cfg)
        model = model_cfg.model if 'model' in model_cfg else model_cfg
        if DefaultScope.get_current_instance() is None:  # used from plain Python
            init_default_scope(model_cfg.get('default_scope', 'mmdet'))
        super().__init__(data_preprocessor=model.get('data_preprocessor'), init_cfg=init_cfg)
        self.manifest, paths = resolve_graph_files(backend_files, backend)
        self.settings = self.manifest['settings']
        self.backend = backend
        self.context_length = int(self.settings['context_length'])
        self.max_prompts = int(self.settings['max_prompts'])
        self.tokenizer_cfg = dict(model['tokenizer'])
        self._tokenizer = None
        head_cfg = dict(model['bbox_head'])
        head_cfg.setdefault('num_queries', model['decoder']['num_queries'])
        head_cfg.update(train_cfg=model.get('train_cfg'), test_cfg=model.get('test_cfg'))
        head_cfg.pop('criterion', None)
        # Only post-processing is used (predict_by_feat); its sub-networks stay unused.
        self.bbox_head = MODELS.build(head_cfg)
        self.text_cache = self._load_cache(text_cache)
        for name in ('vision_tower', 'prompt_decoder'):
            if name not in paths:
                given = [backend_files] if isinstance(backend_files, str) else list(backend_files)
                raise ValueError(f'the {name} graph is missing from {given}; '
                                 f'pass {name}{_SUFFIX[backend]} (from tools/deployment/'
                                 'deploy.py --work-dir)')
        if 'text_tower' not in paths and self.text_cache is None:
            raise ValueError(f'no text_tower{_SUFFIX[backend]} and no text_cache: pass one of '
                             'them (tools/deployment/encode_texts.py writes a cache)')
        limits = dict(num_prompts=self.max_prompts, num_boxes=int(self.settings['max_boxes']))
        self.graphs: Dict[str, GraphRunner] = {}
        for name, path in paths.items():
            if name not in self.manifest['graphs']:
                raise ValueError(f'{path}: the manifest has no {name} entry; pass the files of '
                                 'one export')
            signature = self.manifest['graphs'][name]
            if backend == 'onnxruntime':
                self.graphs[name] = OnnxRuntimeGraphRunner(path, name, signature, limits,
                                                           device, num_threads)
            else:
                self.graphs[name] = TensorRTGraphRunner(path, name, signature, limits, device)
        self.max_prompts = min(self.max_prompts,
                               *[r.limits.get('num_prompts', self.max_prompts)
                                 for r in self.graphs.values()])
        if check_prompts_per_run(prompts_per_run) is not None:
            self.max_prompts = min(self.max_prompts, int(prompts_per_run))
        # One count per batch, as mmdeploy's backend wrappers count one run.
        self._timed_predict = count_time_as_backend(backend, self._predict)

    def _load_cache(self, text_cache) -> Optional[TextFeatureCache]:
        expected = self.manifest['graphs'].get('text_tower', {}).get('fingerprint')
        if text_cache is None:
            return None
        if isinstance(text_cache, TextFeatureCache):
            if expected is not None and text_cache.fingerprint != expected:
                raise ValueError(f'text cache made by another text tower (fingerprint '
                                 f'{text_cache.fingerprint}, this deployment has {expected}); '
                                 're-encode it with tools/deployment/encode_texts.py')
            return text_cache
        return TextFeatureCache.load(text_cache, expected)

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = MODELS.build(self.tokenizer_cfg)
        return self._tokenizer

    # ------------------------------------------------------------------------------------------
    # stages
    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor, ...]:
        """Vision graph on ``(1, 3, H, W)``: ``(feat_s4, feat_s8, feat_s16)``."""
        out = self.graphs['vision_tower'](image=batch_inputs)
        return out['feat_s4'], out['feat_s8'], out['feat_s16']

    def encode_token_ids(self, token_ids: Tensor) -> Tuple[Tensor, Tensor]:
        """Text graph on ``(N, 32)`` token ids (in chunks of ``max_prompts``)."""
        if 'text_tower' not in self.graphs:
            raise ValueError('this deployment has no text_tower graph; every phrase must be in '
                             'the text cache (tools/deployment/encode_texts.py)')
        feats, masks = [], []
        for start in range(0, token_ids.shape[0], self.max_prompts):
            out = self.graphs['text_tower'](token_ids=token_ids[start:start + self.max_prompts])
            feats.append(out['text_feats'])
            masks.append(out['text_mask'])
        return torch.cat(feats), torch.cat(masks)

    def encode_texts(self, texts: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """``(N, L, C)`` features and ``(N, L)`` masks: cached phrases from the cache, the others
        through the tokenizer and the text graph."""
        texts = list(texts)
        feats: List[Optional[Tensor]] = [None] * len(texts)
        masks: List[Optional[Tensor]] = [None] * len(texts)
        todo = [i for i, t in enumerate(texts) if self.text_cache is None or
                t not in self.text_cache]
        cached = [i for i in range(len(texts)) if i not in set(todo)]
        if cached:
            f, m = self.text_cache.lookup([texts[i] for i in cached])
            for j, i in enumerate(cached):
                feats[i], masks[i] = f[j], m[j]
        if todo:
            if 'text_tower' not in self.graphs:
                raise KeyError(f'phrases not in the text-feature cache: '
                               f'{[texts[i] for i in todo]}; add them with '
                               'tools/deployment/encode_texts.py or deploy the text_tower graph')
            f, m = self.encode_token_ids(self.tokenizer([texts[i] for i in todo]))
            for j, i in enumerate(todo):
                feats[i], masks[i] = f[j], m[j]
        return torch.stack(feats), torch.stack(masks)

    def forward_prompts(self, feats: Sequence[Tensor], prompts: PromptBatch,
                        batch_input_shape: Sequence[int]) -> Dict[str, Tensor]:
        """Text + decoder graphs for the prompts of one image -> ``SAM3Head`` raw outputs."""
        _, txt_feats, txt_mask, boxes, box_labels, box_mask = prompts.to_tensors(
            self.encode_texts, batch_input_shape)
        if boxes.shape[1] == 0:  # the graph takes K >= 1: one padding box (masked out)
            n = boxes.shape[0]
            boxes, box_labels = boxes.new_zeros(n, 1, 4), box_labels.new_zeros(n, 1)
            box_mask = box_mask.new_ones(n, 1)
        chunks = []
        for s in range(0, len(prompts), self.max_prompts):
            e = s + self.max_prompts
            chunks.append(self.graphs['prompt_decoder'](
                feat_s4=feats[0], feat_s8=feats[1], feat_s16=feats[2],
                text_feats=txt_feats[s:e], text_mask=txt_mask[s:e], boxes=boxes[s:e],
                box_labels=box_labels[s:e], box_mask=box_mask[s:e]))
        return SAM3Head.concat_outputs([{OUTPUT_TO_HEAD_KEY.get(k, k): v for k, v in c.items()}
                                        for c in chunks])

    # ------------------------------------------------------------------------------------------
    # the mmdet triad
    def predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                rescale: bool = True) -> SampleList:
        """``pred_instances`` per image, as ``SAM3.predict`` gives them (timed for mmdeploy's
        profiler)."""
        return self._timed_predict(batch_inputs, batch_data_samples, rescale)

    def _predict(self, batch_inputs: Tensor, batch_data_samples: SampleList,
                 rescale: bool = True) -> SampleList:
        prompts = PromptBatch.from_data_samples(batch_data_samples)
        shape = tuple(batch_inputs.shape[-2:])
        results = []
        for i, sample in enumerate(batch_data_samples):
            idx = prompts.of_image(i)
            sub = PromptBatch(img_ids=[0] * len(idx), texts=[prompts.texts[p] for p in idx],
                              labels=[prompts.labels[p] for p in idx],
                              boxes=[prompts.boxes[p] for p in idx],
                              box_labels=[prompts.box_labels[p] for p in idx])
            out = {}
            if idx:
                out = self.forward_prompts(self.extract_feat(batch_inputs[i:i + 1]), sub, shape)
            results += self.bbox_head.predict_by_feat(out, sub, [sample], shape, rescale)
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: Tensor, batch_data_samples: SampleList = None):
        if batch_data_samples is None or len(batch_inputs) != 1:
            raise ValueError('DeployedSAM3._forward takes one image with its data sample')
        prompts = PromptBatch.from_data_samples(batch_data_samples)
        return self.forward_prompts(self.extract_feat(batch_inputs), prompts,
                                    tuple(batch_inputs.shape[-2:]))

    def loss(self, batch_inputs, batch_data_samples):
        raise NotImplementedError('a deployed model is for inference; train the PyTorch SAM3')

    def destroy(self):
        """Release the sessions / engines (mmdeploy's tools/test.py calls this at the end)."""
        self.graphs.clear()
