"""tools/slurm_test.sh: the srun command it composes, and its usage message.

Slurm does not run on this machine, so a recording ``srun`` on ``PATH`` stands in for it; the
recorded tools/test.py arguments are then parsed by tools/test.py's own parser.
"""
import importlib.util
import os
import os.path as osp
import subprocess

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'slurm_test.sh')


def _run(args, tmp_path, env=None):
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / 'srun_args'
    srun = bin_dir / 'srun'
    srun.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {record}\n')
    srun.chmod(0o755)
    full_env = dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', **(env or {}))
    proc = subprocess.run(['bash', SCRIPT] + args, env=full_env, capture_output=True, text=True)
    lines = record.read_text().splitlines() if record.exists() else None
    return proc, lines


def test_composes_srun_and_test_py_command(tmp_path):
    proc, argv = _run(['gpu', 'eval_job', 'cfg.py', 'ckpt.pth', '--out', 'r.pkl'], tmp_path,
                      env=dict(GPUS='4', GPUS_PER_NODE='2', CPUS_PER_TASK='3',
                               SRUN_ARGS='--quotatype=auto', PYTHON='py3'))
    assert proc.returncode == 0, proc.stderr
    assert argv[:9] == ['-p', 'gpu', '--job-name=eval_job', '--gres=gpu:2', '--ntasks=4',
                        '--ntasks-per-node=2', '--cpus-per-task=3', '--kill-on-bad-exit=1',
                        '--quotatype=auto']
    assert argv[9:12] == ['py3', '-u', osp.join(REPO, 'tools', 'test.py')]
    test_args = argv[12:]
    assert test_args == ['cfg.py', 'ckpt.pth', '--launcher', 'slurm', '--out', 'r.pkl']
    spec = importlib.util.spec_from_file_location('mmsam3_test_tool',
                                                  osp.join(REPO, 'tools', 'test.py'))
    test_tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(test_tool)
    parsed = test_tool.parse_args(test_args)
    assert (parsed.config, parsed.checkpoint, parsed.launcher, parsed.out) == (
        'cfg.py', 'ckpt.pth', 'slurm', 'r.pkl')


def test_defaults(tmp_path):
    proc, argv = _run(['p', 'j', 'c.py', 'k.pth'], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert '--gres=gpu:8' in argv and '--ntasks=8' in argv and '--cpus-per-task=5' in argv
    assert argv[-4:] == ['c.py', 'k.pth', '--launcher', 'slurm']


def test_usage(tmp_path):
    proc, argv = _run(['p', 'j', 'c.py'], tmp_path)
    assert proc.returncode == 2 and argv is None
    assert 'usage:' in proc.stderr and 'CHECKPOINT' in proc.stderr
