"""Test-support code: the harness around Meta's official ``sam3`` package (parity checks) and
the seeded recipes behind the golden-output files in ``tests/data/golden``.

Nothing here is imported by ``import mmsam3``, and ``sam3`` itself is imported only inside the
functions that need it.
"""
