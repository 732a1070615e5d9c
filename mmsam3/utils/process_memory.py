"""Resident memory of this process, for the memory figures the analysis tools print.

Linux only (``/proc/self``); elsewhere the readers return None and the tools fall back to
``resource.getrusage``.
"""
from typing import Optional


def proc_status_mib(field: str) -> Optional[float]:
    """A size field of ``/proc/self/status`` (``VmHWM`` = peak, ``VmRSS`` = now) in MiB."""
    try:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith(field + ':'):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Set the process's peak resident set (``VmHWM``) back to its current one, so the next
    reading covers only what runs after this call. False where the kernel does not allow it."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False
