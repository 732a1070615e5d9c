"""tools/model_converters: Meta's layouts in and out, SAM 3.1, and bad input."""
import contextlib
import io
import os
import os.path as osp

import pytest
import torch

from converter_cli import REPO, run_cli, run_main

TINY_CFG = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_tiny.py')


def _tiny_cfg_file(tmp_path, bpe_path, **neck):
    neck_cfg = f', neck={neck!r}' if neck else ''
    lines = [f"_base_ = '{TINY_CFG}'",
             f"model = dict(tokenizer=dict(bpe_path='{bpe_path}'){neck_cfg})",
             "default_scope = 'mmdet'"]
    path = tmp_path / 'tiny.py'
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.fixture(scope='module')
def official_sam3_pt(tmp_path_factory, official_sam3_pkg, bpe_path):
    """A tiny official model saved in the sam3.pt layout, tracker and tracker neck included."""
    from mmsam3.testing import official_sam3

    model = official_sam3.build_official_image_model('tiny', seed=0, bpe_path=bpe_path)
    state = official_sam3.official_state_dict_in_checkpoint_layout(model)
    state.update({k.replace('vision_backbone.convs.', 'vision_backbone.sam2_convs.'): v
                  for k, v in state.items() if 'vision_backbone.convs.' in k})
    state['tracker.no_mem_embed'] = torch.randn(1, 1, 8)
    path = tmp_path_factory.mktemp('meta') / 'sam3.pt'
    torch.save(state, path)
    return path, state


@pytest.mark.requires_official
def test_sam3_round_trip_is_exact_and_meta_loads_it(official_sam3_pt, tmp_path, bpe_path):
    from sam3 import model_builder

    from mmsam3.testing import official_sam3

    src, original = official_sam3_pt
    code, out = run_main('sam3_to_mmsam3', src, tmp_path / 'mm.pth')
    assert code == 0, out
    assert 'source format sam3' in out and 'complex RoPE cache' in out
    code, out = run_main('mmsam3_to_sam3', tmp_path / 'mm.pth', tmp_path / 'back.pt',
                         '--config', TINY_CFG, '--tracker-from', src)
    assert code == 0, out
    back = torch.load(tmp_path / 'back.pt', weights_only=True)
    assert set(back) == set(original)
    differing = [k for k in original
                 if not (back[k].dtype == original[k].dtype and torch.equal(back[k], original[k]))]
    assert differing == []  # the regenerated complex RoPE tables included

    # Meta's own loader (the one build_sam3_image_model uses) reports missing keys on stdout.
    fresh = official_sam3.build_official_image_model('tiny', seed=1, bpe_path=bpe_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        model_builder._load_checkpoint(fresh, str(tmp_path / 'back.pt'))
    assert 'missing' not in printed.getvalue(), printed.getvalue()
    state = fresh.state_dict()
    assert all(torch.equal(state[k[len('detector.'):]], v) for k, v in original.items()
               if k.startswith('detector.') and k[len('detector.'):] in state)


def _multiplex_layout(state):
    """The tiny official detector re-keyed as sam3.1_multiplex.pt (Sam3TriViTDetNeck)."""
    out = {}
    for k, v in state.items():
        if 'vision_backbone.convs.3.' in k:
            continue  # the tri neck builds x4, x2, x1 only
        out[k] = v
        if 'vision_backbone.convs.' in k:
            for copy in ('interactive_convs', 'propagation_convs'):
                out[k.replace('vision_backbone.convs.', f'vision_backbone.{copy}.')] = v.clone()
    # Meta's internal names, which its SAM 3.1 loader renames too.
    out = {('sam3_model.' + k[len('detector.'):] if k.startswith('detector.') else k): v
           for k, v in out.items()}
    out['sam2_predictor.model.maskmem_tpos_enc'] = torch.zeros(7, 1, 1, 256)
    out['tracker.model.no_obj_ptr'] = torch.zeros(1, 256)
    return out


@pytest.mark.requires_official
def test_sam3_1_multiplex_converts_and_loads_strictly(official_sam3_pt, tmp_path, bpe_path):
    src, original = official_sam3_pt
    path = tmp_path / 'sam3.1_multiplex.pt'
    torch.save(_multiplex_layout({k: v for k, v in original.items()
                                  if k.startswith('detector.') and 'sam2_convs' not in k}), path)
    cfg = _tiny_cfg_file(tmp_path, bpe_path, scale_factors=(4.0, 2.0, 1.0),
                         num_dropped_levels=0)
    code, out = run_main('sam3_to_mmsam3', path, tmp_path / 'mm.pth', '--verify', cfg)
    assert code == 0, out
    assert 'source format sam3.1' in out and 'strict=True' in out
    assert 'SAM 3.1 interactive-head neck' in out and 'SAM 3.1 multiplex tracker neck' in out
    assert 'video tracker' in out


def test_sam3_1_config_neck_has_three_levels():
    from mmengine.config import Config

    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'models', 'sam3.1_vit-l.py'))
    assert tuple(cfg.model.neck.scale_factors) == (4.0, 2.0, 1.0)
    assert cfg.model.neck.num_dropped_levels == 0


# ---------------------------------------------------------------------------------- bad input
def _fake_sam3(**extra):
    state = {'detector.backbone.vision_backbone.trunk.pos_embed': torch.zeros(1, 5, 4),
             'detector.transformer.decoder.norm.weight': torch.ones(4)}
    state.update(extra)
    return state


def _assert_refused(tmp_path, src, *words, extra=()):
    dst = tmp_path / 'out' / 'converted.pth'
    code, out = run_main('sam3_to_mmsam3', src, dst, *extra)
    assert code == 1, out
    for word in words:
        assert word in out, out
    assert not dst.exists() and not (dst.parent.exists() and os.listdir(dst.parent))
    return out


def test_nonfinite_tensor_is_refused_by_name_or_reported(tmp_path):
    state = _fake_sam3()
    state['detector.transformer.decoder.norm.weight'] = torch.tensor([1.0, float('nan'), 1, 1])
    src = tmp_path / 'nan.pt'
    torch.save(state, src)
    _assert_refused(tmp_path, src, 'decoder.norm.weight', 'non-finite', '--allow-nonfinite')
    code, out = run_main('sam3_to_mmsam3', src, tmp_path / 'ok.pth', '--allow-nonfinite')
    assert code == 0, out
    assert 'NON-FINITE detector.transformer.decoder.norm.weight: 1 values' in out


def test_truncated_file_gives_one_line_and_no_traceback(tmp_path):
    src = tmp_path / 'sam3.pt'
    torch.save(_fake_sam3(), src)
    data = src.read_bytes()
    src.write_bytes(data[:len(data) // 2])
    dst = tmp_path / 'converted.pth'
    proc = run_cli('sam3_to_mmsam3', src, dst, timeout=300)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert str(src) in proc.stderr and 'truncated' in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not dst.exists()


def test_truncated_safetensors_and_missing_file(tmp_path):
    from safetensors.torch import save_file

    src = tmp_path / 'model.safetensors'
    save_file({'vision_encoder.backbone.layer_norm.weight': torch.ones(8)}, src)
    src.write_bytes(src.read_bytes()[:40])
    _assert_refused(tmp_path, src, str(src), 'not a complete safetensors file')
    _assert_refused(tmp_path, tmp_path / 'nothing.pt', 'does not exist')


def test_unknown_layout_and_other_models_are_refused(tmp_path):
    sam2 = {'image_encoder.trunk.blocks.0.attn.qkv.weight': torch.zeros(3, 1),
            'memory_attention.layers.0.norm1.weight': torch.ones(1)}
    torch.save(sam2, tmp_path / 'sam2.pt')
    _assert_refused(tmp_path, tmp_path / 'sam2.pt', 'not a SAM 3 checkpoint', 'SAM 2')
    resnet = {'backbone.layer1.0.conv1.weight': torch.zeros(1), 'fc.weight': torch.zeros(1)}
    torch.save(dict(state_dict=resnet), tmp_path / 'r50.pth')
    _assert_refused(tmp_path, tmp_path / 'r50.pth', 'not a SAM 3 checkpoint', 'ResNet')
    # a SAM 3 layout with keys that are not SAM 3's image model: refused, nothing partial
    torch.save(_fake_sam3(**{'detector.something_else.weight': torch.zeros(1)}),
               tmp_path / 'odd.pt')
    _assert_refused(tmp_path, tmp_path / 'odd.pt', 'detector.something_else.weight')
    # a layout named by hand that does not fit
    _assert_refused(tmp_path, tmp_path / 'sam2.pt', 'not a SAM 3 checkpoint of that',
                    extra=('--src-format', 'hf'))


def test_exporter_refuses_what_is_not_mmsam3(tmp_path):
    torch.save(_fake_sam3(), tmp_path / 'meta.pt')
    dst = tmp_path / 'back.pt'
    code, out = run_main('mmsam3_to_sam3', tmp_path / 'meta.pt', dst)
    assert code == 1 and 'not an mmsam3 SAM3 checkpoint' in out and not dst.exists()


# ------------------------------------------------------------------------- interactive weights
TINY_INTERACTIVE = osp.join(REPO, 'configs', '_base_', 'models', 'sam3_tiny_interactive.py')


def _interactive_cfg_file(tmp_path, bpe_path, name='tiny_interactive.py', **neck):
    neck_cfg = f', neck={neck!r}' if neck else ''
    lines = [f"_base_ = '{TINY_INTERACTIVE}'",
             f"model = dict(tokenizer=dict(bpe_path='{bpe_path}'){neck_cfg})",
             "default_scope = 'mmdet'"]
    path = tmp_path / name
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


@pytest.fixture(scope='module')
def official_interactive_pt(tmp_path_factory, official_sam3_pkg, bpe_path):
    """Meta's tiny image model with inst interactivity in the sam3.pt layout: detector (with
    sam2_convs) and the whole tracker (SAM heads, no_mem_embed, memory encoder / attention)."""
    from mmsam3.testing import official_sam3

    model = official_sam3.build_official_image_model('tiny', seed=0, bpe_path=bpe_path,
                                                     enable_inst_interactivity=True)
    state = official_sam3.official_state_dict_in_checkpoint_layout(model)
    assert any(k.startswith('tracker.transformer.encoder.') for k in state)
    path = tmp_path_factory.mktemp('meta_interactive') / 'sam3.pt'
    torch.save(state, path)
    return path, state


def _same(a, b):
    assert set(a) == set(b), (sorted(set(a) ^ set(b)))[:10]
    return [k for k in a if not (a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]))]


@pytest.mark.requires_official
def test_interactive_round_trip_is_bit_exact(official_interactive_pt, tmp_path, bpe_path):
    src, original = official_interactive_pt
    cfg = _interactive_cfg_file(tmp_path, bpe_path)
    code, out = run_main('sam3_to_mmsam3', src, tmp_path / 'mm.pth', '--verify', cfg)
    assert code == 0, out
    assert 'tracker neck (sam2_convs -> tracker_neck)' in out
    assert 'interactive head (tracker prompt encoder' in out and 'kept unchanged in' in out
    ckpt = torch.load(tmp_path / 'mm.pth', weights_only=True)
    state = ckpt['state_dict']
    assert 'interactive_head.no_mem_embed' in state
    assert 'tracker_neck.convs.0.conv_1x1.weight' in state
    assert all(k.startswith('tracker.') for k in ckpt['video_tracker'])
    assert not any(k.startswith('tracker.sam_') or k == 'tracker.no_mem_embed'
                   for k in ckpt['video_tracker'])
    # back to Meta's layout without --tracker-from: the video tracker came along in the file
    code, out = run_main('mmsam3_to_sam3', tmp_path / 'mm.pth', tmp_path / 'back.pt',
                         '--config', TINY_CFG)
    assert code == 0, out
    back = torch.load(tmp_path / 'back.pt', weights_only=True)
    assert _same(original, back) == []


@pytest.mark.requires_official
def test_sam3_1_interactive_names_round_trip(official_interactive_pt, tmp_path, bpe_path):
    """SAM 3.1's interactive_* names (and its internal prefixes) in, the same names out."""
    src, original = official_interactive_pt
    meta31 = {}
    for k, v in original.items():
        if 'vision_backbone.convs.3.' in k or 'vision_backbone.sam2_convs.3.' in k:
            continue  # the tri neck builds x4, x2, x1 only
        if '.sam2_convs.' in k:
            meta31[k.replace('.sam2_convs.', '.interactive_convs.')] = v
            meta31[k.replace('.sam2_convs.', '.propagation_convs.')] = v.clone() + 1
        elif k.startswith('tracker.sam_'):
            meta31['tracker.model.interactive_' + k[len('tracker.'):]] = v
        elif k == 'tracker.no_mem_embed':
            meta31['tracker.model.interactivity_no_mem_embed'] = v
        elif k.startswith('tracker.'):
            meta31['tracker.model.' + k[len('tracker.'):]] = v
        else:
            meta31[k] = v
    internal = {('sam3_model.' + k[len('detector.'):] if k.startswith('detector.') else
                 'sam2_predictor.' + k[len('tracker.'):]): v for k, v in meta31.items()}
    path = tmp_path / 'sam3.1_multiplex.pt'
    torch.save(internal, path)
    cfg = _interactive_cfg_file(tmp_path, bpe_path, scale_factors=(4.0, 2.0, 1.0),
                                num_dropped_levels=0)
    code, out = run_main('sam3_to_mmsam3', path, tmp_path / 'mm.pth', '--verify', cfg)
    assert code == 0, out
    assert 'source format sam3.1' in out and 'SAM 3.1 interactive head' in out
    assert 'SAM 3.1 interactive-head neck (interactive_convs -> tracker_neck)' in out
    code, out = run_main('mmsam3_to_sam3', tmp_path / 'mm.pth', tmp_path / 'back.pt',
                         '--config', TINY_CFG)
    assert code == 0, out
    back = torch.load(tmp_path / 'back.pt', weights_only=True)
    rope = {k for k in back if k.endswith('.attn.freqs_cis')}
    assert _same({k: v for k, v in meta31.items() if k not in rope},
                 {k: v for k, v in back.items() if k not in rope}) == []


@pytest.mark.requires_official
def test_concept_config_skips_and_interactive_config_reports_missing(
        official_interactive_pt, tmp_path, bpe_path, monkeypatch):
    """A concept-only config loads a checkpoint with the interactive weights (skipping them);
    an interactive config loads an old checkpoint without them; each says so once."""
    import mmengine.logging
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint

    src, _ = official_interactive_pt
    code, out = run_main('sam3_to_mmsam3', src, tmp_path / 'mm.pth')
    assert code == 0, out
    said = []
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, *a, **k: said.append(str(msg)))
    concept = MODELS.build(Config.fromfile(_tiny_cfg_file(tmp_path, bpe_path)).model)
    load_checkpoint(concept, str(tmp_path / 'mm.pth'), strict=True)
    assert any('skipped' in m and 'concept-only' in m for m in said), said

    full = torch.load(tmp_path / 'mm.pth', weights_only=True)
    old = {k: v for k, v in full['state_dict'].items()
           if not k.startswith(('tracker_neck.', 'interactive_head.'))}
    torch.save(dict(state_dict=old), tmp_path / 'old.pth')
    said.clear()
    inter = MODELS.build(Config.fromfile(_interactive_cfg_file(tmp_path, bpe_path)).model)
    before = inter.interactive_head.no_mem_embed.detach().clone()
    load_checkpoint(inter, str(tmp_path / 'old.pth'), strict=True)
    assert any('no interactive-segmentation weights' in m for m in said), said
    assert torch.equal(inter.interactive_head.no_mem_embed, before)
    assert torch.equal(inter.neck.convs[0].conv_1x1.weight,
                       old['neck.convs.0.conv_1x1.weight'])


def test_exporter_refuses_a_neck_with_out_norm(tmp_path, bpe_path):
    """A model trained with ``SAM3FPN(out_norm=True)`` (the from-scratch interactive config) has
    LayerNorms Meta's and transformers' necks cannot hold: every export refuses it by name and
    writes nothing (a file Meta's strict load would reject)."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import mmsam3  # noqa: F401  (registers the modules)
    register_all_modules()
    cfg = Config.fromfile(_interactive_cfg_file(tmp_path, bpe_path))
    cfg.model.tracker_neck = dict(out_norm=True)
    state = MODELS.build(cfg.model).state_dict()
    assert 'tracker_neck.convs.2.norm.weight' in state
    src = tmp_path / 'scratch.pth'
    torch.save(dict(state_dict=state), src)
    for fmt, dst in (('sam3', tmp_path / 'meta.pt'), ('hf-tracker', tmp_path / 'hf_tracker')):
        code, out = run_main('mmsam3_to_sam3', src, dst, '--dst-format', fmt,
                             '--config', str(tmp_path / 'tiny_interactive.py'))
        assert code == 1, (fmt, out)
        assert 'tracker_neck.convs.0.norm.weight' in out, (fmt, out)
        assert not dst.exists(), fmt
