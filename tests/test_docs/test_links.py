"""Every relative link and every repository path the documentation names exists.

Checked: README.md, docs/*.md and the configs' READMEs. A markdown link ``[text](target)`` that
is not a URL must name an existing file (relative to the page), and its ``#anchor``, if any, a
heading of that page (GitHub's slugs). A path in backticks that starts with one of the tree's
top-level folders (``mmsam3/``, ``configs/``, ``tools/``, ``tests/``, ``docs/``, ``requirements/``)
must exist relative to the repository root; ``{a,b}`` alternatives and ``*`` globs are expanded.
A path in another repository is written with that repository's name in front
(``mmdeploy/tools/deploy.py``), so it is not taken for one of ours.
"""
import glob
import os.path as osp
import re

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PAGES = sorted(['README.md'] + [
    osp.relpath(p, REPO) for pattern in ('docs/*.md', 'configs/**/*.md')
    for p in glob.glob(osp.join(REPO, pattern), recursive=True)])
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')
CODE = re.compile(r'`([^`\s]+)`')
TOP = ('mmsam3/', 'configs/', 'tools/', 'tests/', 'docs/', 'requirements/')


def slug(heading):
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


def anchors(path):
    with open(path) as f:
        text = re.sub(r'```.*?```', '', f.read(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r'^#{1,6} (.+)$', text, flags=re.M)}


def expand(path):
    match = re.search(r'\{([^{}]*)\}', path)
    if not match:
        return [path]
    return [p for alt in match.group(1).split(',')
            for p in expand(path[:match.start()] + alt + path[match.end():])]


def exists(path):
    return osp.exists(path) or bool(glob.glob(path))


@pytest.mark.parametrize('page', PAGES)
def test_relative_links_exist(page):
    with open(osp.join(REPO, page)) as f:
        text = f.read()
    broken = []
    for target in LINK.findall(text):
        if re.match(r'^[a-z]+://|^mailto:', target):
            continue
        file_part, _, anchor = target.partition('#')
        dest = osp.normpath(osp.join(REPO, osp.dirname(page), file_part)) if file_part else \
            osp.join(REPO, page)
        if not osp.exists(dest):
            broken.append(f'{target}: no such file')
        elif anchor and dest.endswith('.md') and anchor not in anchors(dest):
            broken.append(f'{target}: no heading with that anchor')
    assert not broken, f'{page}: ' + '; '.join(broken)


@pytest.mark.parametrize('page', PAGES)
def test_named_repository_paths_exist(page):
    with open(osp.join(REPO, page)) as f:
        text = f.read()
    missing = []
    for token in set(CODE.findall(text)):
        token = token.rstrip('.,:;')
        if not token.startswith(TOP) or '...' in token or '<' in token:
            continue
        token = token.split('::', 1)[0]  # pytest node ids: the file part
        for path in expand(token):
            if not exists(osp.join(REPO, path)):
                missing.append(path)
    assert not missing, f'{page} names paths that do not exist: {sorted(missing)}'


def test_every_docs_page_is_linked_from_the_readme():
    with open(osp.join(REPO, 'README.md')) as f:
        readme = f.read()
    pages = [p for p in PAGES if p.startswith('docs/')]
    assert len(pages) >= 10
    assert not [p for p in pages if f']({p})' not in readme]
