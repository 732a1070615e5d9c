"""tools/analysis_tools/results_to_tables.py and pr_curve.py on tiny fixtures with known AP."""
import csv
import json
import os.path as osp
import pickle

import pytest
import torch

from tests.utils import write_coco_split

# dataset a: perfect; dataset b: 'bus' never detected -> AP 0.5 (car 1, bus 0)
SPEC = {
    'a': ([(1, 'cat'), (2, 'dog')], [[(1, [2, 2, 10, 12]), (2, [16, 14, 12, 10])]]),
    'b': ([(1, 'car'), (2, 'bus')], [[(1, [1, 1, 10, 8])], [(2, [3, 3, 20, 20])]]),
}
MISSED = {'b': {2}}


@pytest.fixture
def fixture(tmp_path):
    anns, jsons, samples = {}, {}, []
    for name, (cats, images) in SPEC.items():
        anns[name] = write_coco_split(str(tmp_path / name / 'test'), cats, images)
        res = []
        for img_id, boxes in enumerate(images, 1):
            kept = [(c, b) for c, b in boxes if c not in MISSED.get(name, ())]
            res += [dict(image_id=img_id, category_id=c, bbox=b, score=0.9) for c, b in kept]
            samples.append(dict(
                img_id=img_id, dataset_name=name,
                pred_instances=dict(
                    bboxes=torch.tensor([[x, y, x + w, y + h] for _, (x, y, w, h) in kept],
                                        dtype=torch.float32).reshape(-1, 4),
                    scores=torch.full((len(kept), ), 0.9),
                    labels=torch.tensor([c - 1 for c, _ in kept], dtype=torch.long))))
        jsons[name] = str(tmp_path / f'{name}.bbox.json')
        with open(jsons[name], 'w') as f:
            json.dump(res, f)
    pkl = str(tmp_path / 'results.pkl')
    with open(pkl, 'wb') as f:
        pickle.dump(samples, f)
    return dict(anns=anns, jsons=jsons, pkl=pkl, tmp=tmp_path)


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def _check_tables(per_class, per_dataset):
    ap = {(r['dataset'], r['category']): r['AP'] for r in per_class}
    assert ap == pytest.approx({('a', 'cat'): 1.0, ('a', 'dog'): 1.0, ('b', 'car'): 1.0,
                               ('b', 'bus'): 0.0})
    by_ds = {r['dataset']: r for r in per_dataset}
    assert by_ds['a']['AP'] == pytest.approx(1.0)
    assert by_ds['b']['AP'] == pytest.approx(0.5)
    assert by_ds['mean (2 datasets)']['AP'] == pytest.approx(0.75)


def test_tables_from_result_jsons(fixture, capsys):
    from results_to_tables import main
    out = str(fixture['tmp'] / 'tables')
    per_class, per_dataset = main([fixture['jsons']['a'], fixture['jsons']['b'], '--ann-file',
                                   f"a={fixture['anns']['a']}", f"b={fixture['anns']['b']}",
                                   '--out-dir', out])
    _check_tables(per_class, per_dataset)
    rows = _read_csv(osp.join(out, 'per_dataset.csv'))
    assert [r['dataset'] for r in rows] == ['a', 'b', 'mean (2 datasets)']
    assert float(rows[-1]['AP']) == pytest.approx(0.75)
    assert len(_read_csv(osp.join(out, 'per_class.csv'))) == 4
    md = open(osp.join(out, 'per_class.md')).read()
    assert md.startswith('| dataset | category | cat_id | num_gt | AP | AP50 | AP75 |')
    assert '| b | bus | 2 | 1 | 0.0000 |' in md
    assert 'Per-dataset bbox AP' in capsys.readouterr().out


def test_tables_from_pkl_dump_with_ann_files(fixture):
    from results_to_tables import main
    per_class, per_dataset = main([fixture['pkl'], '--ann-file', f"a={fixture['anns']['a']}",
                                   f"b={fixture['anns']['b']}", '--out-dir',
                                   str(fixture['tmp'] / 't2')])
    _check_tables(per_class, per_dataset)


def test_bad_inputs_are_explained(fixture):
    from results_to_tables import main
    with pytest.raises(SystemExit, match='need as many --ann-file'):
        main([fixture['jsons']['a'], '--ann-file', fixture['anns']['a'], fixture['anns']['b']])
    with pytest.raises(SystemExit, match="datasets \\['b'\\] of the dump are not in"):
        main([fixture['pkl'], '--ann-file', f"a={fixture['anns']['a']}"])


def test_pr_curves(fixture):
    from pr_curve import main
    out = str(fixture['tmp'] / 'pr')
    paths = main([fixture['jsons']['a'], fixture['jsons']['b'], '--ann-file',
                  f"a={fixture['anns']['a']}", f"b={fixture['anns']['b']}", '--out-dir', out,
                  '--per-class-files', '--iou', 'mean'])
    assert osp.join(out, 'a_pr.png') in paths and osp.join(out, 'b_pr_bus.png') in paths
    for path in paths:
        with open(path, 'rb') as f:
            assert f.read(8) == b'\x89PNG\r\n\x1a\n'


def test_pr_curve_values(fixture):
    from results_to_tables import evaluate_groups, load_groups

    from mmsam3.evaluation.functional.coco_analysis import pr_curve
    groups = load_groups([fixture['jsons']['b']], [fixture['anns']['b']])
    _, _, evals = evaluate_groups(groups)
    coco_eval = next(iter(evals.values()))
    recall, precision = pr_curve(coco_eval, 0.5, cat_index=0)  # car: perfect
    assert recall[0] == 0 and recall[-1] == 1
    assert precision == pytest.approx(1.0)
    _, precision = pr_curve(coco_eval, 0.5)  # mean of car (1) and bus (0)
    assert precision == pytest.approx(0.5)
    with pytest.raises(ValueError, match='not one of the COCOeval thresholds'):
        pr_curve(coco_eval, 0.52)
