"""One thread for the process's torch work.

Torch's CPU kernels run on OpenMP, and libgomp gives every thread that opens a parallel
region a team of its own. Once two threads have teams (the engine's worker decoding, the
trainer's main thread updating) the pool holds more threads than there are cores, libgomp
throttles every team's spin-wait, and each small kernel pays a futex wake-up: measured on
2 cores in bfloat16, decoding at batch 8 fell from about 240 to 150 tokens/s, and
`model.generate` on the main thread from 233 to 159. So the engine's batches and the
trainer's passes all run on this one long-lived thread; the event loop stays free for the
bus meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

_ON_IT = threading.local()  # `torch` is True on the torch thread only


def _mark() -> None:
    _ON_IT.torch = True


_EXECUTOR = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-torch",
                               initializer=_mark)


def on_torch_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn` on the torch thread and return its result (inline if already there)."""
    if getattr(_ON_IT, "torch", False):
        return fn(*args, **kwargs)
    return _EXECUTOR.submit(fn, *args, **kwargs).result()


async def to_torch_thread(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Await `fn` run on the torch thread, the event loop serving others meanwhile."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_EXECUTOR, functools.partial(fn, *args, **kwargs))
