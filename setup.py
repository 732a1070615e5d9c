"""Packaging for mmsam3.

The configs are shipped inside the package (``mmsam3/.mim/configs``) following mmdet's ``.mim``
convention, so ``_base_ = 'mmsam3::_base_/models/sam3_vit-l.py'`` works from a user's project.
"""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

ROOT = osp.dirname(osp.abspath(__file__))
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def version():
    scope = {}
    with open(osp.join(ROOT, 'mmsam3', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


def read_requirements(name):
    reqs = []
    with open(osp.join(ROOT, 'requirements', name)) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                reqs.append(line)
    return reqs


def add_mim_extension(link):
    """Expose configs/ and tools/ under mmsam3/.mim (symlinks in develop mode, copies otherwise)."""
    mim_root = osp.join(ROOT, 'mmsam3', '.mim')
    os.makedirs(mim_root, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(ROOT, name)
        dst = osp.join(mim_root, name)
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if not osp.exists(src):
            continue
        if link:
            os.symlink(osp.relpath(src, mim_root), dst)
        elif osp.isdir(src):
            shutil.copytree(src, dst)
        else:
            shutil.copyfile(src, dst)


class BuildPy(build_py):

    def run(self):
        # setuptools' PEP 660 editable builds run build_py with editable_mode set: link there so
        # configs edited in the repo are what `mmsam3::` resolves to.
        add_mim_extension(link=bool(getattr(self, 'editable_mode', False)))
        super().run()


class Develop(develop):

    def run(self):
        add_mim_extension(link=True)
        super().run()


if __name__ == '__main__':
    setup(
        name='mmsam3',
        version=version(),
        description='SAM 3 (Segment Anything with Concepts) for MMDetection 3.x',
        long_description=open(osp.join(ROOT, 'README.md')).read()
        if osp.exists(osp.join(ROOT, 'README.md')) else '',
        long_description_content_type='text/markdown',
        packages=find_packages(
            exclude=('configs', 'configs.*', 'tools', 'tools.*', 'tests', 'tests.*')),
        include_package_data=True,
        # Every file under configs/ (metafiles and READMEs too: mmengine reads a folder's
        # metafile.yml when a user's config inherits `mmsam3::...`) and tools/.
        package_data={'mmsam3': ['.mim/configs/**/*', '.mim/tools/**/*', '.mim/model-index.yml']},
        python_requires='>=3.10',
        install_requires=[r for r in read_requirements('runtime.txt')
                          if not r.startswith(('torch', 'torchvision'))],
        extras_require={
            'deploy': read_requirements('deploy.txt'),
            'tests': read_requirements('tests.txt'),
        },
        cmdclass={'build_py': BuildPy, 'develop': Develop},
        zip_safe=False,
    )
