"""COCO-format dataset for SAM 3 prompt-based (text -> all instances) training and evaluation.

One data item = one image with all its (kept) instances, exactly as mmdet's ``CocoDataset``:
``img_path``, ``img_id``, ``height``, ``width`` and ``instances`` (list of dicts with ``bbox`` xyxy
in original-image pixels, ``bbox_label`` = contiguous category index, ``ignore_flag`` (1 for
``iscrowd``) and, when the json has it, ``mask`` (polygons or RLE, decoded by mmdet's
``LoadAnnotations``)). The per-image prompt list (positives = categories present, negatives =
sampled absent categories) is *not* stored here: :class:`BuildPromptQueries` builds it in the
pipeline so that it is re-sampled every epoch. For that, :meth:`get_data_info` adds to every item:

- ``prompt_texts``: tuple[str] (num_classes,), the noun phrase of each category (its name, or the
  ``prompt_map`` override);
- ``num_negative_prompts``: int, -1 = all absent categories;
- ``prompt_all_classes``: bool, True in test mode (every category is prompted so that mmdet's
  ``CocoMetric`` sees every category).

Layouts:

- plain COCO: ``data_root`` + ``ann_file`` + ``data_prefix=dict(img=...)``;
- Roboflow / RF100-VL / ODinW: ``data_root='.../dataset', split='train'`` resolves
  ``ann_file=<split>/<ann_name>`` (``ann_name='_annotations.coco.json'`` by default; ODinW uses e.g.
  ``'fewshot_train_shot10_seed300.json'`` or ``'annotations_without_background.json'``) and the
  image prefix ``<split>/`` (images next to the json). Explicit ``ann_file`` / ``data_prefix`` win.

Roboflow category id 0: Roboflow exports carry a supercategory-only category (id 0, named after
the project, ``supercategory='none'``) that has no annotations. The official RF100-VL and ODinW
configs feed the json unchanged to ``COCO_FROM_JSON`` (ODinW only shifts 0-based ids by one), so
that category is kept: it is prompted as a negative on every training image, and in evaluation
COCOeval skips it (a category without ground truth has AP -1 and is left out of the mean). We do
the same by default; ``drop_unused_supercategory=True`` removes such categories (no annotation in
the json and their name used as another category's ``supercategory``).

Bad data (all messages name the json file and the offending id):

- corrupt / non-COCO json: ``ValueError`` naming the file and the missing key / the JSON error;
- missing image file: ``missing_image='error'`` (default) raises ``FileNotFoundError`` listing the
  missing paths at load time; ``'skip'`` drops those images with a logged warning; ``'ignore'``
  does not check (remote backends are never checked);
- annotation whose ``category_id`` is not in ``categories``: ``ValueError`` naming the annotation
  id and category id (annotations of categories left out of ``metainfo['classes']`` are skipped
  silently, as in mmdet);
- annotation whose ``image_id`` is not in ``images``: skipped with a warning;
- zero-area boxes and boxes wholly outside the image: dropped with a warning; boxes partly outside:
  clipped to the image (as the official loader clamps normalised boxes to [0, 1]) with a warning;
- annotations without ``segmentation`` in a json where others have one: the box outline is used
  as mask (so ``LoadAnnotations(with_mask=True)`` works) with a warning. Box-only jsons (no
  annotation has a mask, e.g. RF100-VL) need ``with_mask=False``;
- images without annotations: kept (negative prompts only), or dropped by
  ``filter_cfg=dict(filter_empty_gt=True)``.

Warnings are logged through mmengine's current logger and also kept in ``self.load_warnings``.
"""
import ast
import json
import logging
import os.path as osp
import random
from collections import defaultdict
from typing import Dict, List, Optional, Union

import numpy as np
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path
from mmengine.logging import print_log

_IMG_KEYS = ('id', 'file_name', 'width', 'height')
_ANN_KEYS = ('image_id', 'category_id', 'bbox')
_MAX_LISTED = 5


def resolve_split_layout(data_root: str,
                         split: str,
                         ann_name: str = '_annotations.coco.json') -> dict:
    """Paths of one split of a Roboflow / RF100-VL / ODinW dataset.

    ``<data_root>/<split>/<ann_name>`` with the images next to it. Returns
    ``dict(ann_file=..., data_prefix=dict(img=...))`` (absolute when ``data_root`` is).
    """
    split_dir = osp.join(data_root, split)
    return dict(ann_file=osp.join(split_dir, ann_name), data_prefix=dict(img=split_dir + '/'))


def _parse_prompt_map(prompt_map) -> Dict[Union[int, str], str]:
    """Accept ``{name: phrase}``, ``{cat_id: phrase}``, the official ODinW list
    ``[{'id': 1, 'name': 'phrase'}, ...]`` or that list as a string."""
    if prompt_map is None:
        return {}
    if isinstance(prompt_map, str):
        try:
            prompt_map = ast.literal_eval(prompt_map)
        except (ValueError, SyntaxError) as e:
            raise ValueError(f'prompt_map string could not be parsed: {e}') from e
    if isinstance(prompt_map, (list, tuple)):
        out = {}
        for item in prompt_map:
            if not isinstance(item, dict) or 'id' not in item or 'name' not in item:
                raise ValueError("prompt_map as a list must hold dicts with 'id' and 'name', "
                                 f'got {item!r}')
            out[int(item['id'])] = str(item['name'])
        return out
    if isinstance(prompt_map, dict):
        return dict(prompt_map)
    raise TypeError(f'prompt_map must be a dict, a list of dicts or a str, got {type(prompt_map)}')


@DATASETS.register_module()
class SAM3PromptCocoDataset(CocoDataset):
    """COCO / Roboflow / ODinW json -> one item per image, for prompt-based SAM 3 training.

    Args:
        ann_file (str): COCO json, relative to ``data_root``. Optional when ``split`` is given.
        split (str, optional): Roboflow / ODinW layout: ``ann_file`` defaults to
            ``<split>/<ann_name>`` and the image prefix to ``<split>/``.
        ann_name (str): json name inside a split folder. Defaults to ``'_annotations.coco.json'``.
        num_negative_prompts (int): absent categories prompted as negatives per training image;
            -1 = all of them (official ``include_negatives=True``, one chunk), 0 = none.
        prompt_map (dict | list | str, optional): phrase override per category, keyed by name or
            category id, or the official ODinW ``prompts`` list ``[{'id', 'name'}, ...]``.
        missing_image (str): ``'error'`` | ``'skip'`` | ``'ignore'``, see the module docstring.
        drop_unused_supercategory (bool): drop Roboflow's supercategory-only categories.
        num_images (int, optional): keep a random subset of this many images, chosen like the
            official ``limit_ids`` (RF100-VL uses 100): ``random.Random(n).shuffle`` of the images
            sorted by id.
        **kwargs: everything ``CocoDataset`` takes (``data_root``, ``data_prefix``, ``metainfo``,
            ``filter_cfg``, ``pipeline``, ``test_mode``, ``backend_args``, ``serialize_data``...).
            Without ``metainfo['classes']`` the classes are the json's categories in json order
            (the order mmdet's ``CocoMetric`` maps labels to category ids with).
    """

    # Classes come from the json (users bring their own categories), never COCO-80.
    METAINFO: dict = {}

    def __init__(self,
                 *args,
                 ann_file: str = '',
                 split: Optional[str] = None,
                 ann_name: str = '_annotations.coco.json',
                 num_negative_prompts: int = -1,
                 prompt_map=None,
                 missing_image: str = 'error',
                 drop_unused_supercategory: bool = False,
                 num_images: Optional[int] = None,
                 data_prefix: Optional[dict] = None,
                 **kwargs) -> None:
        if missing_image not in ('error', 'skip', 'ignore'):
            raise ValueError(f"missing_image must be 'error', 'skip' or 'ignore', "
                             f'got {missing_image!r}')
        if not isinstance(num_negative_prompts, int) or num_negative_prompts < -1:
            raise ValueError('num_negative_prompts must be an int >= -1 (-1 = all absent '
                             f'categories), got {num_negative_prompts!r}')
        data_prefix = dict(data_prefix) if data_prefix else dict(img='')
        if 'img' not in data_prefix:
            data_prefix['img'] = data_prefix.pop('img_path', '')
        if split is not None:
            layout = resolve_split_layout('', split, ann_name)
            if not ann_file:
                ann_file = layout['ann_file']
            if not data_prefix.get('img'):
                data_prefix['img'] = layout['data_prefix']['img']
        if not ann_file:
            raise ValueError('SAM3PromptCocoDataset needs ann_file, or split (Roboflow / ODinW '
                             'layout: <data_root>/<split>/<ann_name>)')
        self.split = split
        self.num_negative_prompts = num_negative_prompts
        self.prompt_map = _parse_prompt_map(prompt_map)
        self.missing_image = missing_image
        self.drop_unused_supercategory = drop_unused_supercategory
        self.num_images = num_images
        self.load_warnings: List[str] = []
        self.prompt_texts: tuple = ()
        super().__init__(*args, ann_file=ann_file, data_prefix=data_prefix, **kwargs)

    # ------------------------------------------------------------------ helpers
    def _warn(self, msg: str) -> None:
        self.load_warnings.append(msg)
        print_log(msg, logger='current', level=logging.WARNING)

    def _error(self, what: str, exc=ValueError) -> Exception:
        return exc(f'{self.ann_file}: {what}')

    @staticmethod
    def _ids(ids) -> str:
        ids = list(ids)
        s = ', '.join(str(i) for i in ids[:_MAX_LISTED])
        return s + (f', ... ({len(ids)} in all)' if len(ids) > _MAX_LISTED else '')

    def _read_json(self) -> dict:
        try:
            with get_local_path(self.ann_file, backend_args=self.backend_args) as local_path:
                with open(local_path, 'r', encoding='utf-8') as f:
                    data = json.load(f)
        except FileNotFoundError as e:
            hint = (f" (split={self.split!r}: expected <data_root>/{self.split}/<ann_name>)"
                    if self.split else '')
            raise FileNotFoundError(f'annotation file not found: {self.ann_file}{hint}') from e
        except json.JSONDecodeError as e:
            raise self._error(
                f'not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})') from None
        except UnicodeDecodeError as e:
            raise self._error(f'not a UTF-8 text file ({e})') from None
        if not isinstance(data, dict):
            raise self._error(f'not a COCO json: top level is a {type(data).__name__}, expected an '
                              "object with 'images', 'annotations' and 'categories'")
        missing = [k for k in ('images', 'categories') if k not in data]
        if missing:
            raise self._error(f'not a COCO json: missing key(s) {missing} (found {sorted(data)})')
        if 'annotations' not in data:
            self._warn(f"{self.ann_file}: no 'annotations' key; every image has no instances")
            data['annotations'] = []
        for key in ('images', 'annotations', 'categories'):
            if not isinstance(data[key], list):
                raise self._error(f"'{key}' must be a list, got {type(data[key]).__name__}")
        return data

    def _validate_entries(self, data: dict) -> None:
        for i, cat in enumerate(data['categories']):
            if not isinstance(cat, dict) or 'id' not in cat or 'name' not in cat:
                raise self._error(f"categories[{i}] needs 'id' and 'name', got {cat!r}")
        for i, img in enumerate(data['images']):
            if not isinstance(img, dict):
                raise self._error(f'images[{i}] is not an object: {img!r}')
            miss = [k for k in _IMG_KEYS if k not in img]
            if miss:
                raise self._error(f"images[{i}] (id {img.get('id', '?')}) is missing {miss}")
        for i, ann in enumerate(data['annotations']):
            if not isinstance(ann, dict):
                raise self._error(f'annotations[{i}] is not an object: {ann!r}')
            miss = [k for k in _ANN_KEYS if k not in ann]
            if miss:
                raise self._error(
                    f"annotation id {ann.get('id', f'<index {i}>')} is missing {miss}")
            bbox = ann['bbox']
            if (not isinstance(bbox, (list, tuple)) or len(bbox) != 4
                    or not all(isinstance(v, (int, float)) for v in bbox)):
                raise self._error(f"annotation id {ann.get('id', f'<index {i}>')}: bbox must be 4 "
                                  f'numbers [x, y, w, h], got {bbox!r}')

    def _select_categories(self, data: dict) -> List[dict]:
        cats = list(data['categories'])
        ids = [c['id'] for c in cats]
        dup_ids = sorted({i for i in ids if ids.count(i) > 1})
        if dup_ids:
            raise self._error(f'duplicate category ids {dup_ids}')
        if self.drop_unused_supercategory:
            used = {a['category_id'] for a in data['annotations']}
            supers = {c.get('supercategory') for c in cats}
            dropped = [c for c in cats if c['id'] not in used and c['name'] in supers]
            if dropped:
                print_log(
                    f'{self.ann_file}: dropping supercategory-only categories '
                    f"{[(c['id'], c['name']) for c in dropped]}",
                    logger='current')
                cats = [c for c in cats if c not in dropped]
        classes = self._metainfo.get('classes')
        if classes:
            by_name = {}
            for c in cats:
                by_name.setdefault(c['name'], c)
            unknown = [n for n in classes if n not in by_name]
            if unknown:
                raise self._error(f"metainfo classes {unknown} are not category names in the json "
                                  f"(names: {[c['name'] for c in cats]})")
            chosen = [c for c in cats if c['name'] in set(classes)]
            if [c['name'] for c in chosen] != list(classes):
                # CocoMetric maps label i to the i-th matching category in json order; keeping the
                # same order keeps prompt texts, labels and evaluation consistent.
                self._warn(f'{self.ann_file}: metainfo classes reordered to the json order '
                           f"{[c['name'] for c in chosen]}")
        else:
            chosen = cats
        names = [c['name'] for c in chosen]
        dups = sorted({n for n in names if names.count(n) > 1})
        if dups:
            detail = {n: [c['id'] for c in chosen if c['name'] == n] for n in dups}
            raise self._error(
                f'duplicate category names {detail}: prompts and CocoMetric need unique '
                'names (for a Roboflow supercategory-only category, set '
                'drop_unused_supercategory=True)')
        return chosen

    def _prompt_text(self, cat: dict) -> str:
        for key in (cat['name'], cat['id']):
            if key in self.prompt_map:
                return str(self.prompt_map[key])
        return str(cat['name'])

    # ------------------------------------------------------------------ loading
    def load_data_list(self) -> List[dict]:
        """Read, validate and parse the json. Returns mmdet-style data infos (module docstring)."""
        self.load_warnings = []
        data = self._read_json()
        self._validate_entries(data)
        all_cat_ids = {c['id'] for c in data['categories']}
        chosen = self._select_categories(data)

        self.cat_ids = [c['id'] for c in chosen]
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.prompt_texts = tuple(self._prompt_text(c) for c in chosen)
        unknown_map = [
            k for k in self.prompt_map if k not in {c['name']
                                                    for c in chosen} and k not in self.cat2label
        ]
        if unknown_map:
            self._warn(f'{self.ann_file}: prompt_map keys {unknown_map} match no category')
        self._metainfo['classes'] = tuple(c['name'] for c in chosen)
        self._metainfo['prompt_texts'] = self.prompt_texts

        images = {}
        for img in data['images']:
            if img['id'] in images:
                raise self._error(f"duplicate image id {img['id']}")
            images[img['id']] = img

        anns_by_img = defaultdict(list)
        orphans, ann_ids = [], []
        for i, ann in enumerate(data['annotations']):
            ann_id = ann.get('id', f'<index {i}>')
            ann_ids.append(ann_id)
            if ann['category_id'] not in all_cat_ids:
                raise self._error(
                    f"annotation id {ann_id} (image id {ann['image_id']}) has category_id "
                    f"{ann['category_id']}, which is not in 'categories' "
                    f'(known ids: {sorted(all_cat_ids)})')
            if ann['image_id'] not in images:
                orphans.append(ann_id)
                continue
            anns_by_img[ann['image_id']].append(ann)
        if orphans:
            self._warn(f'{self.ann_file}: skipped {len(orphans)} annotation(s) whose image_id is '
                       f'not in images (annotation ids {self._ids(orphans)})')
        if self.ANN_ID_UNIQUE and len(set(ann_ids)) != len(ann_ids):
            seen, dup = set(), []
            for a in ann_ids:
                (dup.append(a) if a in seen else seen.add(a))
            raise self._error(f'annotation ids are not unique (duplicates: {self._ids(dup)})')

        # Sorted image ids, as the official loader (and its `limit_ids` subset) uses.
        img_ids = sorted(images)
        if self.num_images is not None and self.num_images < len(img_ids):
            order = list(range(len(img_ids)))
            random.Random(len(order)).shuffle(order)
            img_ids = sorted(img_ids[i] for i in order[:self.num_images])

        self._bad_boxes = defaultdict(list)
        self._json_has_masks = any(a.get('segmentation') for a in data['annotations'])
        data_list = []
        missing = []
        self.cat_img_map = defaultdict(list)
        for img_id in img_ids:
            img_info = dict(images[img_id], img_id=img_id)
            info = self.parse_data_info(
                dict(raw_img_info=img_info, raw_ann_info=anns_by_img.get(img_id, [])))
            if self.missing_image != 'ignore' and self._is_local(info['img_path']) \
                    and not osp.isfile(info['img_path']):
                missing.append(info['img_path'])
                continue
            for inst in info['instances']:
                cat_id = self.cat_ids[inst['bbox_label']]
                if not self.cat_img_map[cat_id] or self.cat_img_map[cat_id][-1] != img_id:
                    self.cat_img_map[cat_id].append(img_id)
            data_list.append(info)

        reasons = {
            'zero_area':
            'zero-area (w or h <= 0) boxes dropped',
            'outside':
            'boxes wholly outside the image dropped',
            'clipped':
            'boxes partly outside the image clipped to it',
            'no_mask':
            'annotations without segmentation (in a json with masks) use their '
            'box as mask'
        }
        for key, what in reasons.items():
            if self._bad_boxes[key]:
                self._warn(f'{self.ann_file}: {len(self._bad_boxes[key])} {what} '
                           f'(annotation ids {self._ids(self._bad_boxes[key])})')
        if missing:
            msg = (f'{self.ann_file}: {len(missing)} image file(s) not found: '
                   f'{self._ids(missing)}')
            if self.missing_image == 'error':
                raise FileNotFoundError(msg + " (set missing_image='skip' to drop them)")
            self._warn(msg + ' -> skipped')
        return data_list

    def _is_local(self, path: str) -> bool:
        return self.backend_args is None and '://' not in path

    def parse_data_info(self, raw_data_info: dict) -> dict:
        """One image: ``img_path``, ``img_id``, ``seg_map_path``, ``height``, ``width``,
        ``instances`` (``bbox`` xyxy clipped to the image, ``bbox_label``, ``ignore_flag``,
        optional ``mask``)."""
        img_info = raw_data_info['raw_img_info']
        ann_info = raw_data_info['raw_ann_info']
        width, height = float(img_info['width']), float(img_info['height'])
        data_info = dict(img_path=osp.join(self.data_prefix.get('img', ''), img_info['file_name']),
                         img_id=img_info['img_id'],
                         seg_map_path=None,
                         height=img_info['height'],
                         width=img_info['width'])
        if self.return_classes:
            data_info['text'] = self.metainfo['classes']
            data_info['caption_prompt'] = self.caption_prompt
            data_info['custom_entities'] = True

        instances = []
        bad = getattr(self, '_bad_boxes', None)
        if bad is None:
            bad = self._bad_boxes = defaultdict(list)
        if not hasattr(self, '_json_has_masks'):
            self._json_has_masks = False
        for ann in ann_info:
            if ann.get('ignore', False) or ann['category_id'] not in self.cat2label:
                continue
            ann_id = ann.get('id', '?')
            x, y, w, h = (float(v) for v in ann['bbox'])
            if not np.isfinite([x, y, w, h]).all() or w <= 0 or h <= 0:
                bad['zero_area'].append(ann_id)
                continue
            x1, y1 = max(x, 0.), max(y, 0.)
            x2, y2 = min(x + w, width), min(y + h, height)
            if x2 <= x1 or y2 <= y1:
                bad['outside'].append(ann_id)
                continue
            if (x1, y1, x2, y2) != (x, y, x + w, y + h):
                bad['clipped'].append(ann_id)
            instance = dict(bbox=[x1, y1, x2, y2],
                            bbox_label=self.cat2label[ann['category_id']],
                            ignore_flag=1 if ann.get('iscrowd', 0) else 0)
            if ann.get('segmentation'):
                instance['mask'] = ann['segmentation']
            elif self._json_has_masks:
                # mmdet's LoadAnnotations(with_mask=True) needs a mask for every instance: use the
                # box outline (the official loader keeps the box and skips that mask's loss).
                instance['mask'] = [[x1, y1, x2, y1, x2, y2, x1, y2]]
                bad['no_mask'].append(ann_id)
            instances.append(instance)
        data_info['instances'] = instances
        return data_info

    def get_data_info(self, idx: int) -> dict:
        """mmdet data info plus ``prompt_texts``, ``num_negative_prompts``,
        ``prompt_all_classes`` for :class:`BuildPromptQueries`."""
        info = super().get_data_info(idx)
        info['prompt_texts'] = self.prompt_texts
        info['num_negative_prompts'] = self.num_negative_prompts
        info['prompt_all_classes'] = bool(self.test_mode)
        return info
