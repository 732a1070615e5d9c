"""tools/analysis/train_memory.py on the tiny model (CPU smoke test)."""
import os.path as osp

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_train_memory_tiny(bpe_path, capsys):
    import train_memory
    for name in ('sam3_vit-l_frozen-towers_1xb1_coco.py', 'sam3_vit-l_full-ft_1xb1-rf100_coco.py'):
        result = train_memory.main([osp.join(REPO, 'configs', name), '--size', 'tiny',
                                    '--device', 'cpu', '--bpe-path', bpe_path,
                                    '--cfg-options', 'model.decoder.num_layers=1'])
        out = capsys.readouterr().out
        assert 'peak memory' in out and 'MiB' in out
        assert result['input_size'] == 168 and result['peak_mb'] >= 0
        assert result['loss'] == result['loss']  # finite number, not NaN
        assert result['trainable_m'] < result['params_m']
        assert any('AmpOptimWrapper' in n for n in result['notes'])
