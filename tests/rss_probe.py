"""Probe run in a subprocess by test_project.py: projects a trajectory file and reports its memory use.

Usage: python rss_probe.py PATH

Opens the trajectory at PATH, projects it onto the line from its first to its last checkpoint, and prints
one JSON object:

    rss_after_import_kib   VmRSS right after ``import linpath`` (torch included)
    peak_import_kib        VmHWM right after the import: the peak of this process image so far
    peak_project_kib       VmHWM at the end, the high-water mark having been reset after the import, i.e.
                           the peak while opening and projecting (null where the kernel cannot reset it)
    peak_rss_kib           the peak of the whole probe: max of the two (VmHWM at the end if no reset)
    ru_maxrss_kib          ru_maxrss at the end. Beware: Linux carries the parent's high-water mark
                           across fork+exec into it, so when the parent is large this reports the parent.
    seconds                wall time of open + project
    threads                RAYON_NUM_THREADS as seen by the probe (null when unset)
    steps, coordinate, residual, displacement, direction_norm, path_length, max_residual, explained
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time


def status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    """Resets VmHWM (Linux >= 4.0: writing 5 to clear_refs); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def main() -> None:
    path = sys.argv[1]
    import linpath

    rss_after_import = status_kib("VmRSS")
    peak_import = status_kib("VmHWM")
    reset = reset_peak()
    t0 = time.perf_counter()
    traj = linpath.Trajectory.open(path)
    proj = linpath.project(traj, traj[0], traj[-1])
    seconds = time.perf_counter() - t0
    hwm = status_kib("VmHWM")
    out = {
        "rss_after_import_kib": rss_after_import,
        "peak_import_kib": peak_import,
        "peak_project_kib": hwm if reset else None,
        "peak_rss_kib": max(peak_import, hwm),
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "seconds": seconds,
        "threads": os.environ.get("RAYON_NUM_THREADS"),
        **proj.to_dict(),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
