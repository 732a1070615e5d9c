"""Full-size SAM3-Small tiers from random official-layout weights (slow; needs Meta's sam3)."""
import pytest


@pytest.mark.slow
@pytest.mark.requires_official
def test_tiers_load_strictly_run_the_demo_and_identity_reproduces(bpe_path, tmp_path):
    from small_tiers_check import main
    results = main(['--work-dir', str(tmp_path), '--skip-latency', '--skip-memory',
                    '--bpe-path', bpe_path])
    assert results['identity_max_abs_diff'] <= 1e-5
    teacher = results['teacher']
    for tier in ('S', 'XS'):
        r = results['tiers'][tier]
        assert r['strict_load'] and r['demo_ok'], tier
        assert r['image_gflops'] < 0.5 * teacher['image_gflops'], tier
        assert r['params_m'] < teacher['params_m'], tier
