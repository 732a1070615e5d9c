"""model-index.yml lists every model config, the way OpenMIM (`mim search mmsam3`) reads it:
``mmsam3/.mim/model-index.yml`` -> its ``Import`` metafiles -> each model's ``Config``."""
import glob
import os.path as osp

import pytest
import yaml

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# Not models: shared pieces and mmdeploy's deploy configs.
NOT_MODELS = ('configs/_base_/', 'configs/deploy/')


def load_index(root):
    with open(osp.join(root, 'model-index.yml')) as f:
        index = yaml.safe_load(f)
    models, collections = [], set()
    for metafile in index['Import']:
        with open(osp.join(root, metafile)) as f:
            meta = yaml.safe_load(f)
        collections |= {c['Name'] for c in meta.get('Collections', [])}
        for c in meta.get('Collections', []):
            assert osp.isfile(osp.join(root, c['README'])), c
        models += meta['Models']
    return models, collections


def model_configs():
    found = glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True)
    found = [osp.relpath(p, REPO) for p in found]
    return sorted(p for p in found if not p.startswith(NOT_MODELS))


def test_every_model_config_is_indexed():
    models, collections = load_index(REPO)
    names = [m['Name'] for m in models]
    assert len(names) == len(set(names)), 'model names must be unique'
    indexed = [m['Config'] for m in models]
    for model in models:
        assert model['In Collection'] in collections, model['Name']
        assert osp.isfile(osp.join(REPO, model['Config'])), model['Config']
    assert sorted(set(indexed)) == model_configs()


def test_names_follow_mmdet_pattern():
    # sam3_{backbone}_{recipe}[_{gpus}x{batch}-{schedule}]_{dataset}.py
    for path in model_configs():
        if not path.startswith('configs/sam3/'):
            continue
        parts = osp.basename(path)[:-3].split('_')
        assert parts[0] == 'sam3' and len(parts) in (4, 5), path
        if len(parts) == 5:
            gpus_batch, schedule = parts[3].split('-', 1)
            gpus, batch = gpus_batch.split('xb')
            assert gpus.isdigit() and batch.isdigit() and schedule, path


@pytest.mark.parametrize('path', model_configs())
def test_indexed_config_loads(path):
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, path))
    assert cfg.model.type


def test_installed_package_carries_the_index():
    # setup.py exposes configs/ and model-index.yml under mmsam3/.mim, where mim looks.
    import mmsam3
    mim_root = osp.join(osp.dirname(mmsam3.__file__), '.mim')
    if not osp.exists(osp.join(mim_root, 'model-index.yml')):
        pytest.skip('mmsam3 is not installed with its .mim folder (pip install -e .)')
    models, _ = load_index(mim_root)
    assert sorted({m['Config'] for m in models}) == model_configs()
