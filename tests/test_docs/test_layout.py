"""docs/layout.md names what is in the tree, and every tool in the tree."""
import glob
import os.path as osp
import re

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def layout_block():
    with open(osp.join(REPO, 'docs', 'layout.md')) as f:
        text = f.read()
    return text[text.index('```') + 3:text.index('```', text.index('```') + 3)]


def test_layout_paths_exist():
    for line in layout_block().splitlines():
        path = line.split()[0] if line.strip() and not line.startswith(' ') else None
        if not path:
            continue
        for part in re.sub(r'\{(\w+),(\w+)\}', r'\1', path).split(','):
            part = part.strip().rstrip('/')
            base = osp.dirname(path.split(',')[0]) if '/' not in part and ',' in path else ''
            candidate = osp.join(REPO, base, part)
            assert osp.exists(candidate) or glob.glob(candidate + '*'), (line, candidate)


def test_every_tool_is_listed():
    block = layout_block()
    tools = glob.glob(osp.join(REPO, 'tools', '**', '*.py'), recursive=True)
    tools += glob.glob(osp.join(REPO, 'tools', '**', '*.sh'), recursive=True)
    missing = []
    for tool in tools:
        name = osp.splitext(osp.basename(tool))[0]
        if name == '__init__':
            continue
        if name not in block and osp.basename(tool) not in block:
            missing.append(osp.relpath(tool, REPO))
    # dist_* / slurm_* launchers are listed as a brace pattern.
    missing = [m for m in missing if not re.match(r'tools/(dist|slurm)_(train|test)\.sh', m)]
    assert not missing, f'tools missing from docs/layout.md: {missing}'
