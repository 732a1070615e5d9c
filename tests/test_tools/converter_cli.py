"""Run the model-converter scripts in this process (``main(argv)``) or as a user would."""
import contextlib
import importlib.util
import io
import os.path as osp
import subprocess
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPTS = osp.join(REPO, 'tools', 'model_converters')


def load_script(name):
    spec = importlib.util.spec_from_file_location(f'_converter_{name}',
                                                  osp.join(SCRIPTS, f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_main(name, *argv):
    """``(exit code, stdout)`` of ``tools/model_converters/<name>.py argv`` run in-process."""
    out = io.StringIO()
    code = 0
    with contextlib.redirect_stdout(out):
        try:
            result = load_script(name).main([str(a) for a in argv])
            code = result or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
            if not isinstance(exc.code, int) and exc.code is not None:
                print(exc.code)
    return code, out.getvalue()


def run_cli(name, *argv, timeout=600):
    """The script as a subprocess: ``CompletedProcess`` with text output."""
    return subprocess.run([sys.executable, osp.join(SCRIPTS, f'{name}.py'), *map(str, argv)],
                          capture_output=True, text=True, timeout=timeout)
