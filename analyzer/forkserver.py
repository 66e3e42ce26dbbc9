"""What the profiling workers' fork server does once, before it forks them.

``analyzer.dataset`` names this module in ``set_forkserver_preload``: the fork server imports
it, and every worker is a fork of that server. So the imports, the process setup and Pillow's
plugin registry are done once, and their memory pages are shared by all workers instead of
each worker making its own copy (bench/results/throughput.md, "Memory per worker"). Freezing
the garbage collector keeps collections in a worker from writing to those shared objects,
which would copy their pages. The daemon's own process never imports this module.
"""

from __future__ import annotations

import gc

from PIL import Image

from analyzer.worker import prepare_worker_process

prepare_worker_process()
Image.preinit()  # the common formats' plugins, which the first Image.open would import
gc.freeze()
