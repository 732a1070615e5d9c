"""Is a checkpoint file readable, and which is the newest readable one of a work dir.

``--resume`` uses these (through :mod:`mmsam3.utils.compat`) before it loads anything, so a
truncated or damaged file is named in a warning instead of surfacing as torch's
``OSError: [Errno 22] Invalid argument`` or a miniz error.

A torch checkpoint is a zip archive; truncation removes its central directory (at the end), and
every member carries a CRC-32, so :func:`checkpoint_read_error` can tell a damaged file from a
good one by reading it once, without unpickling. Files in torch's legacy (pre-1.6, non-zip)
format are checked by loading them with the safe loader.
"""
import logging
import os
import os.path as osp
import re
import zipfile

from mmengine.logging import print_log

from .atomic_save import is_atomic_temporary

__all__ = [
    'checkpoint_read_error', 'readable_checkpoints_newest_first', 'find_latest_readable_checkpoint',
    'check_resume_checkpoint'
]

_STEP = re.compile(r'_(\d+)\.pth$')


def checkpoint_read_error(path):
    """Why ``path`` cannot be read as a checkpoint.

    Args:
        path (str): a local checkpoint file. A folder (DeepSpeed's layout) is not checked.

    Returns:
        str | None: a short reason ("it is empty (0 bytes)", "member x fails its CRC check"...),
        or None when the file reads completely. Whether its pickle is *trusted* is a separate
        question that the loader answers (:class:`~mmsam3.utils.UntrustedCheckpointError`).
    """
    if not path:
        return 'no file is named'
    if not osp.exists(path):
        return 'it does not exist'
    if osp.isdir(path):
        return None
    try:
        size = osp.getsize(path)
    except OSError as exc:
        return f'it cannot be read ({exc})'
    if size == 0:
        return 'it is empty (0 bytes)'
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                bad = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            return f'its zip archive is damaged ({exc})'
        if bad is not None:
            return f'its member {bad} fails its CRC check (the file is damaged)'
        if not any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
            return 'it is a zip archive but not a torch checkpoint (no data.pkl)'
        return None
    try:
        with open(path, 'rb') as f:
            head = f.read(4)
    except OSError as exc:
        return f'it cannot be read ({exc})'
    if head == b'PK\x03\x04':
        return (f'it is truncated ({size} bytes): the zip directory that torch.save writes '
                'last is missing')
    if head[:1] != b'\x80':  # torch's legacy format starts with a pickle PROTO opcode
        return 'it is not a torch checkpoint (neither a zip archive nor a pickle)'
    from .compat import UntrustedCheckpointError, safe_torch_load

    try:
        safe_torch_load(path, map_location='cpu')
    except UntrustedCheckpointError:
        return None
    except Exception as exc:  # truncated zip or damaged legacy file: torch raises many types
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ''
        return (f'it is truncated or damaged ({type(exc).__name__}'
                f'{": " + detail if detail else ""})')
    return None


def _candidates(folders, exclude=()):
    """``*.pth`` files of ``folders``, newest first: by the step in the name, then by mtime."""
    exclude = {osp.realpath(p) for p in exclude if p}
    found = {}
    for folder in folders:
        if not folder or not osp.isdir(folder):
            continue
        for name in os.listdir(folder):
            path = osp.join(folder, name)
            if (name.endswith('.pth') and not is_atomic_temporary(name)
                    and osp.realpath(path) not in exclude):
                found.setdefault(osp.realpath(path), path)

    def key(path):
        match = _STEP.search(osp.basename(path))
        try:
            mtime = osp.getmtime(path)
        except OSError:
            mtime = 0.0
        return (int(match.group(1)) if match else -1, mtime)

    return sorted(found.values(), key=key, reverse=True)


def readable_checkpoints_newest_first(folders, exclude=(), warn=True):
    """Yield the readable ``*.pth`` files of ``folders``, newest first; warn about the others."""
    for path in _candidates(folders, exclude):
        problem = checkpoint_read_error(path)
        if problem is None:
            yield path
        elif warn:
            print_log(f'Skipping checkpoint {path}: {problem}.',
                      logger='current',
                      level=logging.WARNING)


def _pointer_file(work_dir):
    return osp.join(work_dir, 'last_checkpoint')


def find_latest_readable_checkpoint(work_dir, named=None):
    """The checkpoint that auto-resume should load from ``work_dir``.

    Args:
        work_dir (str): the run's work dir, holding mmengine's ``last_checkpoint`` pointer.
        named (str | None): what the pointer names (mmengine's ``find_latest_checkpoint``).

    Returns:
        str | None: ``named`` when it reads completely. Otherwise a warning names it and the
        newest readable ``*.pth`` in its folder and ``work_dir`` is returned, with a second
        warning. None when there is no pointer (mmengine then starts afresh).

    Raises:
        RuntimeError: the pointer exists but no checkpoint in those folders can be read. A fresh
            start would silently throw the run away and overwrite the evidence, so it stops.
    """
    if named is None:
        return None
    problem = checkpoint_read_error(named)
    if problem is None:
        return named
    pointer = _pointer_file(work_dir)
    print_log(
        f'Cannot resume from {named or "(empty name)"}, named by {pointer}: {problem}. '
        'Looking for the newest readable checkpoint instead.',
        logger='current',
        level=logging.WARNING)
    folders = [work_dir]
    if named and osp.dirname(named) and osp.realpath(osp.dirname(named)) != osp.realpath(work_dir):
        folders.insert(0, osp.dirname(named))
    for path in readable_checkpoints_newest_first(folders, exclude=[named]):
        print_log(f'Resuming from {path} instead of the unreadable {named}.',
                  logger='current',
                  level=logging.WARNING)
        return path
    raise RuntimeError(
        f'Cannot resume: {pointer} names {named or "(empty name)"} ({problem}) and no other '
        f'checkpoint in {", ".join(folders)} can be read. Pass --resume PATH to a good '
        f'checkpoint, or remove {pointer} (and the damaged files) to start training afresh.')


def check_resume_checkpoint(path, work_dir=None):
    """Refuse an explicitly given ``--resume PATH`` that cannot be read, naming a good one.

    An explicit path is the user's choice, so it is not silently replaced; the error names the
    newest readable checkpoint of ``work_dir`` (if any) to resume from instead.

    Raises:
        RuntimeError: ``path`` is a local file that :func:`checkpoint_read_error` rejects.
    """
    if '://' in str(path):
        return
    problem = checkpoint_read_error(path)
    if problem is None:
        return
    folders = [osp.dirname(path) or '.'] + ([work_dir] if work_dir else [])
    good = next(readable_checkpoints_newest_first(folders, exclude=[path], warn=False), None)
    hint = (f' The newest readable checkpoint next to it or in the work dir is {good}: pass '
            f'--resume {good}.'
            if good else ' No other readable checkpoint was found next to it or in the work dir.')
    raise RuntimeError(f'Cannot resume from {path}: {problem}.{hint}')
