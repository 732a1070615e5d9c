"""Which layers a shallower student keeps: evenly spaced, or the best-ranked, per segment.

SAM 3's ViT attends across windows only in its global blocks (7, 15, 23, 31 of 32), so a
student keeps every one of them and chooses its windowed blocks inside the segments the global
blocks delimit: segment ``k`` holds the windowed blocks before global block ``k`` (plus a last
segment after the last global block).
"""
from typing import List, Optional, Sequence

from .compression_plan import CompressionError

__all__ = ['evenly_spaced', 'select_vit_blocks', 'segments']


def evenly_spaced(num_keep: int, candidates: Sequence[int]) -> List[int]:
    """``num_keep`` entries of ``candidates`` spread evenly (first and last included when
    ``num_keep >= 2``); all of them when ``num_keep == len(candidates)``."""
    candidates = list(candidates)
    n = len(candidates)
    if not 0 <= num_keep <= n:
        raise CompressionError(f'cannot keep {num_keep} of {n} layers')
    if num_keep == 0:
        return []
    if num_keep == 1:
        return [candidates[n // 2]]
    return [candidates[round(i * (n - 1) / (num_keep - 1))] for i in range(num_keep)]


def segments(depth: int, global_blocks: Sequence[int]) -> List[List[int]]:
    """Windowed block indices between global blocks: ``len(global_blocks) + 1`` lists."""
    out, start = [], 0
    for g in sorted(global_blocks):
        out.append(list(range(start, g)))
        start = g + 1
    out.append(list(range(start, depth)))
    return out


def select_vit_blocks(teacher_depth: int, teacher_global: Sequence[int], student_depth: int,
                      student_global: Sequence[int],
                      scores: Optional[Sequence[float]] = None) -> List[int]:
    """Teacher block kept at each student position.

    Args:
        teacher_depth, teacher_global: the teacher ViT's depth and global-attention blocks.
        student_depth, student_global: the student's.
        scores (Sequence[float], optional): one usefulness score per teacher block (higher =
            keep, see :func:`~.block_ranking.score_vit_blocks`); None keeps evenly spaced ones.

    Returns:
        list[int]: ``student_depth`` teacher block indices, increasing; student block ``i`` is
        teacher block ``result[i]``, and the student's global blocks land on the teacher's.

    Raises:
        CompressionError: more student blocks than teacher blocks, global indices out of range,
            a different number of global blocks, or a segment with more windowed blocks than
            the teacher's.
    """
    t_glob, s_glob = sorted(int(i) for i in teacher_global), sorted(int(i) for i in student_global)
    if student_depth > teacher_depth:
        raise CompressionError(f'the student ViT has {student_depth} blocks, more than the '
                               f'teacher\'s {teacher_depth}: set backbone.depth <= {teacher_depth}')
    bad = [i for i in s_glob if not 0 <= i < student_depth]
    if bad:
        raise CompressionError(f'student global_att_blocks {tuple(s_glob)}: {bad} out of range for '
                               f'depth {student_depth} (valid 0..{student_depth - 1})')
    if len(s_glob) != len(t_glob):
        raise CompressionError(
            f'the student has {len(s_glob)} global-attention blocks {tuple(s_glob)}, the teacher '
            f'{len(t_glob)} {tuple(t_glob)}: global blocks are the only attention across windows, '
            f'keep all of them (e.g. global_att_blocks='
            f'{_suggest_globals(student_depth, t_glob, teacher_depth)})')
    t_seg, s_seg = segments(teacher_depth, t_glob), segments(student_depth, s_glob)
    kept = []
    for k, (t_blocks, s_blocks) in enumerate(zip(t_seg, s_seg)):
        if len(s_blocks) > len(t_blocks):
            raise CompressionError(
                f'student ViT segment {k} (windowed blocks {s_blocks}) has {len(s_blocks)} '
                f'blocks, the teacher\'s segment only {len(t_blocks)} ({t_blocks}); move the '
                f'student\'s global_att_blocks {tuple(s_glob)}')
        if scores is None:
            chosen = evenly_spaced(len(s_blocks), t_blocks)
        else:
            best = sorted(t_blocks, key=lambda b: -float(scores[b]))[:len(s_blocks)]
            chosen = sorted(best)
        kept += chosen
        if k < len(t_glob):
            kept.append(t_glob[k])
    return kept


def _suggest_globals(student_depth: int, teacher_global: Sequence[int], teacher_depth: int):
    """Global positions spread like the teacher's: ((g + 1) * depth_s / depth_t) - 1."""
    return tuple(max(0, round((g + 1) * student_depth / teacher_depth) - 1) for g in teacher_global)
