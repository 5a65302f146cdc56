"""OpenCV as facever uses it: with its internal thread pool switched off.

facever parallelises across images itself (DataLoader worker processes, writer threads), so OpenCV's
pool would only contend with them. Worse, a process that forks while the pool exists hands its locks
and condition variables to the child without the threads, and the child's first OpenCV call can block
forever (seen: DataLoader workers hung in `pthread_cond_destroy` inside `cv2.setNumThreads` after an
alignment had run in the same process). So every use goes through `opencv()`, and every place that
forks workers calls it first: the pool is then shut down in the parent, where that is safe.
"""

from __future__ import annotations


def opencv():
    """The `cv2` module, with its thread pool off (process-wide; cheap to call again)."""
    import cv2

    if cv2.getNumThreads() != 1:
        cv2.setNumThreads(0)  # 0 = run every OpenCV function sequentially in the calling thread
    return cv2
