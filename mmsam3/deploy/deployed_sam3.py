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

Clicks, boxes and mask prompts (an export of a model with the interactive head), with
``SAM3Predictor``'s API: :meth:`DeployedSAM3.set_image` runs the vision graph once (it also
gives the tracker levels), then each :meth:`DeployedSAM3.predict` (``points=``, ``box=``,
``mask_input=``, ...) runs only the small interactive decoder::

    clicks / box corners (image px) ─ network-input px, + padding point (label -1)
    tracker_* + points + mask prompt ─ interactive_decoder ─ 4 low-res logits, 4 IoU,
                                                            object score
    ─ SAMMaskDecoder.select (multimask: outputs 1..3; single: output 0 or, where it is unstable,
      the best multimask output) ─ postprocess_masks (hole filling, bilinear, > 0)

The tokenizer and the post-processing are the PyTorch model's own code, built from the model
config (no weights needed); the networks are the graph files.
"""
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmengine.config import Config
from mmengine.registry import DefaultScope, init_default_scope
from torch import Tensor

from ..models.dense_heads.sam3_head import SAM3Head
from ..models.utils.prompt_batch import PromptBatch, check_prompts_per_run
from ..utils.click_prompt import check_click_prompts, click_round_result
from .export_graphs import ALL_GRAPH_NAMES, INTERACTIVE_GRAPH, OUTPUT_TO_HEAD_KEY
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
        files = [osp.join(root, f'{g}{_SUFFIX[backend]}') for g in ALL_GRAPH_NAMES
                 if osp.isfile(osp.join(root, f'{g}{_SUFFIX[backend]}'))]
        files.append(osp.join(root, MANIFEST_NAME))
    json_files = [f for f in files if f.endswith('.json')]
    manifest = read_manifest(json_files[0] if json_files else osp.join(
        osp.dirname(osp.abspath(files[0])), MANIFEST_NAME))
    if files == json_files:  # the manifest alone (what mmdeploy's tools pass): its graphs
        root = osp.dirname(osp.abspath(json_files[0]))
        files += [osp.join(root, f'{g}{_SUFFIX[backend]}') for g in ALL_GRAPH_NAMES
                  if g in manifest['graphs']]
    paths = {}
    for f in files:
        if f.endswith('.json'):
            continue
        stem, ext = osp.splitext(osp.basename(f))
        if stem not in ALL_GRAPH_NAMES or ext != _SUFFIX[backend]:
            raise ValueError(f'{f}: expected graph files named {{{",".join(ALL_GRAPH_NAMES)}}}'
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
            needed; ``text_tower`` unless every phrase is in ``text_cache``;
            ``interactive_decoder`` for clicks) and optionally the manifest.
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
        self_cfg = model_cfg
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
        self.cfg = self_cfg
        self.interactive_head = None
        if INTERACTIVE_GRAPH in self.graphs:
            if model.get('interactive_head') is None:
                raise ValueError(f'the export has an {INTERACTIVE_GRAPH} graph but the model '
                                 'config has no interactive_head: pass the *_interactive model '
                                 'config the graphs were exported from')
            # Post-processing only (select, postprocess_masks); its networks stay unused.
            self.interactive_head = MODELS.build(model['interactive_head']).eval()
        self._pipeline = None
        self.reset_image()

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
    # clicks, boxes and mask prompts (SAM3Predictor's API)
    @property
    def with_interactive(self) -> bool:
        """Whether this deployment answers clicks (it has the interactive decoder)."""
        return self.interactive_head is not None

    @property
    def low_res_size(self) -> Optional[Tuple[int, int]]:
        """``(h, w)`` of the low-resolution logits / mask prompts (288 x 288 for SAM 3)."""
        head = self.interactive_head
        return None if head is None else tuple(head.low_res_size)

    @property
    def image_size(self) -> Optional[Tuple[int, int]]:
        """``(height, width)`` of the image given to :meth:`set_image` (None before)."""
        return None if self._metainfo is None else tuple(self._metainfo['ori_shape'][:2])

    def reset_image(self) -> None:
        """Forget the image set last (its tracker features, metainfo and click state)."""
        self.tracker_feats: Optional[Dict[str, Tensor]] = None
        self._metainfo: Optional[dict] = None
        self._input_shape: Optional[Tuple[int, int]] = None
        self.reset_clicks()

    def reset_clicks(self) -> None:
        """Forget the previous click round's logits (``refine=True`` starts afresh)."""
        self.previous_logits: Optional[np.ndarray] = None

    @torch.no_grad()
    def set_image(self, img) -> 'DeployedSAM3':
        """The model config's test pipeline and the vision graph on ``img`` (a file path, an
        ``(H, W, 3)`` uint8 BGR array, an ``(H, W)`` grey array or a PIL image), once; the
        tracker levels are kept for :meth:`predict_clicks`. Errors leave the last image set."""
        from ..apis.sam3_predictor import BOX_ONLY_PHRASE, SAM3Predictor, _inference_pipeline
        if self._pipeline is None:
            from mmcv.transforms import Compose
            self._pipeline = Compose(_inference_pipeline(self.cfg))
        inputs = SAM3Predictor._as_pipeline_input(img)
        inputs.update(img_id=0, text=[BOX_ONLY_PHRASE])
        data = self._pipeline(inputs)
        batch = self.data_preprocessor(
            dict(inputs=[data['inputs']], data_samples=[data['data_samples']]), False)
        images, sample = batch['inputs'], batch['data_samples'][0]
        out = self.graphs['vision_tower'](image=images)
        tracker = None
        if self.with_interactive:
            tracker = {k: out[k] for k in ('tracker_embed', 'tracker_feat_s4', 'tracker_feat_s8')}
        self.reset_image()
        self.tracker_feats = tracker
        meta = dict(sample.metainfo)
        for key in ('texts', 'text', 'prompt_labels', 'prompt_boxes', 'prompt_box_labels'):
            meta.pop(key, None)
        self._metainfo = meta
        self._input_shape = tuple(images.shape[-2:])
        return self

    def _click_inputs(self, points, point_labels, box, mask_input, refine):
        if not self.with_interactive:
            raise RuntimeError(
                f'this deployment has no {INTERACTIVE_GRAPH} graph, so it cannot answer clicks, '
                'boxes or mask prompts: export a model with the interactive head (a config with '
                'tracker_neck and interactive_head, e.g. configs/_base_/models/'
                'sam3_vit-l_interactive.py) and pass its graphs; phrases work with this one')
        if self.tracker_feats is None:
            raise RuntimeError('DeployedSAM3.predict() needs an image: call '
                               'deployed.set_image(img) first')
        return check_click_prompts(points, point_labels, box, mask_input, refine,
                                   self.image_size, self.low_res_size, self.previous_logits)

    @torch.no_grad()
    def predict_clicks(self, points=None, point_labels=None, box=None, mask_input=None,
                       multimask_output: bool = True, refine: bool = False) -> dict:
        """One object's mask from clicks / a box / a mask prompt on the image set last, as
        ``SAM3Predictor.predict_clicks`` (same arguments, results and errors); also reached
        through :meth:`predict` with these keywords.

        Returns:
            dict: ``masks (C, H, W)`` bool, ``scores (C,)`` float32 predicted IoU,
            ``low_res_logits (C, h, w)`` float32 (clamped to +-32), ``object_score`` (float
            logit); ``C`` = 3 with ``multimask_output``, else 1 (the single-mask output, or the
            best multimask output where it is unstable). The best mask's logits are kept for
            ``refine``.
        """
        coords, labels, mask = self._click_inputs(points, point_labels, box, mask_input, refine)
        head = self.interactive_head
        if coords is not None:
            # Image pixels -> network-input pixels (Meta's order: x / w * size), then the
            # padding point the PyTorch head appends itself.
            h, w = self.image_size
            in_h, in_w = self._metainfo.get('img_shape', self._input_shape)[:2]
            pts = (coords / np.array([w, h]) * np.array([in_w, in_h])).astype(np.float32)
            pts = np.concatenate([pts, np.zeros((1, 2), np.float32)])[None]
            lbl = np.concatenate([labels, [-1]]).astype(np.int64)[None]
        else:  # a mask prompt alone: no sparse prompt at all, as in Meta's predictor
            pts, lbl = np.zeros((1, 0, 2), np.float32), np.zeros((1, 0), np.int64)
        lh, lw = self.low_res_size
        has_mask = np.array([0.0 if mask is None else 1.0], np.float32)
        mask = np.zeros((1, 1, lh, lw), np.float32) if mask is None else mask[None]
        out = self.graphs[INTERACTIVE_GRAPH](
            **self.tracker_feats, point_coords=torch.from_numpy(pts),
            point_labels=torch.from_numpy(lbl), mask_input=torch.from_numpy(mask),
            has_mask_input=torch.from_numpy(has_mask))
        decoder = head.mask_decoder.eval()  # the stability choice is an inference-time rule
        low, scores = decoder.select(out['low_res_logits'].float(), out['iou_pred'].float(),
                                     multimask_output)
        result, self.previous_logits = click_round_result(
            self._low_res_to_image(low.cpu()), low, scores, out['object_score_logits'])
        return result

    def _low_res_to_image(self, low: Tensor) -> Tensor:
        """``(1, C, h, w)`` logits -> ``(1, C, H, W)`` bool masks of the original image."""
        resized = self._metainfo.get('img_shape', self._input_shape)[:2]
        return self.interactive_head.image_masks(low, self.image_size, self._input_shape, resized)

    # ------------------------------------------------------------------------------------------
    # the mmdet triad
    def predict(self, batch_inputs: Optional[Tensor] = None,
                batch_data_samples: Optional[SampleList] = None, rescale: bool = True, *,
                points=None, point_labels=None, box=None, mask_input=None,
                multimask_output: bool = True, refine: bool = False):
        """``pred_instances`` per image, as ``SAM3.predict`` gives them (timed for mmdeploy's
        profiler); or, called with only the keywords ``points`` / ``point_labels`` / ``box`` /
        ``mask_input`` / ``multimask_output`` / ``refine``, :meth:`predict_clicks` on the image
        given to :meth:`set_image` (``SAM3Predictor.predict``'s interactive form)."""
        interactive = (points is not None or point_labels is not None or box is not None or
                       mask_input is not None or refine)
        if batch_inputs is None and batch_data_samples is None:
            if not interactive:
                raise ValueError('predict() needs a batch (batch_inputs, batch_data_samples) or '
                                 'interactive prompts: points + point_labels, a box, or a '
                                 'mask_input')
            return self.predict_clicks(points, point_labels, box, mask_input,
                                       multimask_output, refine)
        if interactive:
            raise ValueError('predict() takes either a batch (phrases in its data samples) or '
                             'interactive prompts (points / point_labels / box / mask_input / '
                             'refine) on the image given to set_image(), not both')
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
