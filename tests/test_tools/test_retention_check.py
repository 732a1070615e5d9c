"""The retention experiment (slow, ~75 min on one core: the tool's defaults, a 3000-iteration
teacher and 400 CPU-seconds per student, one thread, as in docs/sam3_small.md): a compressed,
distilled tiny student keeps >= 90% of its teacher's bbox AP50 and beats the same student from
scratch 2x."""
import pytest


@pytest.mark.slow
def test_distilled_student_retains_the_teacher(bpe_path, tmp_path):
    from retention_check import main
    summary = main(['--work-dir', str(tmp_path / 'work'), '--data-root',
                    str(tmp_path / 'shapes'), '--bpe', bpe_path, '--threads', '1'])
    assert summary['gflops']['image-tower'][2] <= 0.5  # student / teacher image-tower FLOPs
    assert summary['retention'] >= 0.9, summary['results']
    assert summary['gain'] >= 2.0, summary['results']
