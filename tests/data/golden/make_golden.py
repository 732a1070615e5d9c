"""Write (or check) the golden-output files next to this script.

    python tests/data/golden/make_golden.py                # regenerate every file
    python tests/data/golden/make_golden.py vit decoder    # only these
    python tests/data/golden/make_golden.py --check        # compare, exit 1 on a difference

The recipes live in ``mmsam3/testing/golden_outputs.py``; ``tests/test_testing/
test_golden_outputs.py`` compares against the files on every run, also where Meta's ``sam3``
package is absent. Regenerate only after a change that is meant to move the numbers, and first
run the parity tests (``pytest -m requires_official``) where ``sam3`` is installed, so the new
numbers are still the official model's. ``sam3_tiny`` needs the CLIP BPE vocabulary
(``../shared/data`` or ``MMSAM3_BPE_PATH``).
"""
import argparse
import os
import sys

import torch


def main(argv=None):
    from mmsam3.testing import golden_outputs as golden

    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('names', nargs='*', help=f'recipes to run, of {sorted(golden.RECIPES)} '
                        '(default: all)')
    parser.add_argument('--seed', type=int, default=0, help='weights and inputs seed')
    parser.add_argument('--check', action='store_true', help='compare instead of writing')
    args = parser.parse_args(argv)
    unknown = sorted(set(args.names) - set(golden.RECIPES))
    if unknown:
        parser.error(f'unknown recipe(s) {unknown}; choose from {sorted(golden.RECIPES)}')
    torch.set_num_threads(1)

    failed = False
    for name in args.names or sorted(golden.RECIPES):
        outputs = golden.RECIPES[name](args.seed)
        path = golden.golden_path(name)
        if args.check:
            problems = golden.compare(outputs, golden.load_golden(path))
            failed |= bool(problems)
            print(f'{name}: ' + ('same' if not problems else
                                 '\n  '.join(['DIFFERENT'] + [f'{k}: {v}'
                                                              for k, v in problems.items()])))
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        golden.save_golden(path, golden.summarize(outputs))
        print(f'{name}: wrote {path} ({os.path.getsize(path) / 1024:.1f} KiB, '
              f'{len(outputs)} tensors)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
