"""Executors: run work units somewhere and hand back their results, in unit order.

The interface is one method, ``run(units, fn, progress=None) -> results``: ``fn(unit)``
does a unit's whole work (reads its input, writes its part and completion record) and
returns a small picklable result; ``run`` returns ``[fn(u) for u in units]``, calling
``progress(unit.weight)`` in the calling process as each unit finishes (any order).
Executors only schedule; they compute nothing themselves.

* :class:`LocalExecutor`: ``workers`` threads (default) or processes of this machine;
  ``workers=1`` runs the units in this process, one after the other.
* :class:`RayExecutor`: units as Ray tasks (``pip install 'pythia-data[ray]'``) on the
  cluster at ``address`` or on a local cluster started and stopped here.

Failures: an error of the package (:class:`~pythia_data.errors.PythiaDataError`: bad
input, a full disk) is deterministic and ends the run at once with that error; any other
failure of a unit (a worker process killed, ``MemoryError``, a lost node) runs the unit
again, up to ``retries`` times. Units are idempotent (atomic parts, records written last),
so a unit run twice writes the same part.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures

from pythia_data.cancel import run_cancellable
from pythia_data.errors import OutputError, PythiaDataError, UsageError

__all__ = ["EXECUTORS", "LOCAL_MODES", "Executor", "LocalExecutor", "RayExecutor",
           "make_executor"]

EXECUTORS = ("local", "ray")
#: How :class:`LocalExecutor` runs units side by side (the first is the default).
LOCAL_MODES = ("thread", "process")
DEFAULT_RETRIES = 3

Update = Callable[[int], None]


class Executor:
    """Base of the executors: ``run(units, fn, progress=None) -> results``."""

    name = "?"
    workers = 1

    def run(self, units: Sequence, fn: Callable, progress: Update | None = None) -> list:
        raise NotImplementedError

    def start(self, module: str | None = None) -> None:
        """Get the workers going ahead of :meth:`run` where that helps (default: nothing)."""

    def close(self) -> None:
        """Release what :meth:`start` took and :meth:`run` did not use."""


def _failed(unit, attempts: int, exc: BaseException) -> OutputError:
    what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return OutputError(f"unit {unit.id} ({unit.path}) failed {attempts} times; last: {what}")


class LocalExecutor(Executor):
    """``workers`` threads (``mode="thread"``, the default) or processes
    (``mode="process"``) on this machine.

    Threads: the units' heavy work (reading JSON, checking UTF-8, encoding, decoding) runs
    in Numba kernels that release the GIL, and a thread starts at once where a process
    must start an interpreter and load the tokenizer and the compiled kernels: on 2 cores
    at 1 GB, 2 threads ran 10-14 % faster than 2 processes (docs/scale.md). A stopped run
    (an error, Ctrl-C) stops its threads at their next batch (:mod:`pythia_data.cancel`).

    Processes start with ``forkserver`` (no inherited threads or locks); a process killed
    mid-unit (OOM killer, ``kill -9``) breaks the pool, which is started again and the
    units that were running are retried: a crash takes one unit, not the run."""

    name = "local"

    def __init__(self, workers: int | None = None, *, mode: str = LOCAL_MODES[0],
                 retries: int = DEFAULT_RETRIES):
        if workers is None:
            workers = os.cpu_count() or 1
        if workers < 1:
            raise UsageError(f"--workers must be at least 1, not {workers}")
        if mode not in LOCAL_MODES:
            raise UsageError(f"unknown local executor mode {mode!r} "
                             f"(choose from {', '.join(LOCAL_MODES)})")
        self.workers = workers
        self.mode = mode
        self.retries = retries
        self._started = None  # a process pool started ahead of run() by start()

    def start(self, module: str | None = None) -> None:
        """Start the worker processes now, before :meth:`run` (a no-op for threads or one
        worker): the fork server imports ``module`` (the unit function's) and the workers
        fork from it while this process goes on loading the tokenizer and planning, so
        their start-up overlaps the driver's instead of following it. :meth:`run` uses
        them; :meth:`close` stops them if it never comes."""
        if self.mode != "process" or self.workers == 1 or self._started is not None:
            return
        pool = self._pool(self.workers, module)
        for _ in range(self.workers):
            pool.submit(os.getpid)  # a pool starts its processes as tasks arrive
        self._started = pool

    def close(self) -> None:
        """Stop the processes :meth:`start` started and :meth:`run` did not use."""
        pool, self._started = self._started, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _pool(self, n: int, module: str | None):
        if self.mode == "thread":
            return ThreadPoolExecutor(max_workers=n, thread_name_prefix="pythia-data-unit")
        # imported here: a run whose units all run in this process never loads them
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        methods = multiprocessing.get_all_start_methods()
        if "forkserver" in methods:
            ctx = multiprocessing.get_context("forkserver")
            # the unit function's module (numba, numpy, the package) is imported once in
            # the fork server, and numba's per-process set-up done there (jobs.warm);
            # every worker forks from it instead of doing both again
            preload = ["pythia_data.jobs.warm"]
            if module and module != "__main__":
                preload.append(module)
            ctx.set_forkserver_preload(preload)
        else:  # pragma: no cover - not Linux
            ctx = multiprocessing.get_context("spawn")
        return ProcessPoolExecutor(max_workers=n, mp_context=ctx)

    def run(self, units: Sequence, fn: Callable, progress: Update | None = None) -> list:
        units = list(units)
        results: list = [None] * len(units)
        if not units:
            return results
        if self.workers == 1 or len(units) == 1:  # no pool to start for one unit
            self.close()
            for k, unit in enumerate(units):
                results[k] = self._inline(unit, fn)
                if progress is not None:
                    progress(unit.weight)
            return results
        from concurrent.futures.process import BrokenProcessPool

        attempts = [0] * len(units)
        todo = list(range(len(units)))
        n = min(self.workers, len(units))
        module = getattr(getattr(fn, "func", fn), "__module__", None)
        stop = threading.Event()  # set when the run ends early: threads stop at a batch
        while todo:
            pool, self._started = self._started or self._pool(n, module), None
            broken = False
            finished = False
            running: dict[Future, int] = {}
            try:
                queue = list(todo)
                todo = []
                # keep at most 2 units per worker queued: a broken pool loses little
                while queue or running:
                    while queue and len(running) < 2 * n and not broken:
                        k = queue[0]
                        try:
                            if self.mode == "thread":
                                fut = pool.submit(run_cancellable, stop, fn, units[k])
                            else:
                                fut = pool.submit(fn, units[k])
                        except BrokenProcessPool:
                            # a worker died since the last wait (its futures fail below)
                            broken = True
                            break
                        queue.pop(0)
                        attempts[k] += 1
                        running[fut] = k
                    done = set()
                    if running:
                        done, _ = wait_futures(running, return_when=FIRST_COMPLETED)
                    for fut in done:
                        k = running.pop(fut)
                        try:
                            results[k] = fut.result()
                        except PythiaDataError:
                            raise
                        except BrokenProcessPool as exc:
                            broken = True
                            if attempts[k] > self.retries:
                                raise _failed(units[k], attempts[k], exc) from None
                            todo.append(k)
                            continue
                        except Exception as exc:  # noqa: BLE001 - retried, then reported
                            if attempts[k] > self.retries:
                                raise _failed(units[k], attempts[k], exc) from None
                            queue.append(k)
                            continue
                        if progress is not None:
                            progress(units[k].weight)
                    if broken:
                        # every unit still in this pool is lost with it: run them again
                        todo += list(running.values()) + queue
                        running.clear()
                        queue = []
                finished = True
            finally:
                if not finished:  # an error ends the run: stop the units still running
                    stop.set()
                if not finished or broken:
                    # a broken pool's workers too: a submit that raced the break may have
                    # started one after the pool stopped its own, and shutdown() would wait
                    # for it forever (seen under load: the job hung)
                    _terminate(pool)
                pool.shutdown(wait=True, cancel_futures=True)
            todo.sort()
        return results

    def _inline(self, unit, fn: Callable):
        for attempt in range(1, self.retries + 2):
            try:
                return fn(unit)
            except PythiaDataError:
                raise
            except Exception as exc:  # noqa: BLE001 - retried, then reported
                if attempt > self.retries:
                    raise _failed(unit, attempt, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover  # noqa: S101


def _terminate(pool) -> None:
    """Stop a pool's worker processes now (the units they run are abandoned: their
    partial files are removed or reused by a rerun)."""
    for proc in list((getattr(pool, "_processes", None) or {}).values()):
        with contextlib.suppress(Exception):
            proc.terminate()


def _call(fn: Callable, unit):
    """A unit in a Ray task (its worker process collects garbage as a command's does)."""
    from pythia_data.jobs.startup import tune

    tune()
    return fn(unit)


def ray_module():
    """``ray``, or UsageError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray (pip install 'pythia-data[ray]')") from None
    return ray


class RayExecutor(Executor):
    """Units as Ray tasks. ``address``: a running cluster (``ray start --head`` prints
    it; ``auto`` finds the local one); None starts a local cluster of ``workers`` CPUs
    (default all) for this run and stops it afterwards. Each task asks for ``num_cpus``
    CPUs and ``num_gpus`` GPUs. Ray itself retries a task whose worker or node died
    (``max_retries``); errors raised by a unit are not retried when they are the
    package's own (deterministic) and retried up to ``retries`` times otherwise.

    Paths in the units must be visible under the same name on every node (a shared
    filesystem): parts are written there and merged by the driver.

    :meth:`run` alone connects and disconnects around the units; after :meth:`start`
    (connect and start the job's Ray workers early) the connection stays open until
    :meth:`close`."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, *,
                 num_cpus: float = 1, num_gpus: float = 0, retries: int = DEFAULT_RETRIES):
        self.address = address
        self.workers = workers or (os.cpu_count() or 1)
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self.retries = retries
        self._ray = None  # the ray module while connected (start() or run())
        self._owned = False  # whether this executor called ray.init (then it shuts down)
        self._warm: list = []  # the warm-up tasks start() submitted

    def _connect(self):
        if self._ray is not None:
            return self._ray
        ray = ray_module()
        if not ray.is_initialized():
            options = {"logging_level": logging.WARNING, "log_to_driver": False,
                       "configure_logging": True}
            try:
                if self.address:
                    ray.init(address=self.address, **options)
                else:
                    # "local": always a new cluster, never one found on the machine
                    ray.init(address="local", num_cpus=self.workers,
                             include_dashboard=False, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = self.address or "a local cluster"
                raise UsageError(f"cannot start Ray on {where}: {exc}") from None
            self._owned = True
        self._ray = ray
        return ray

    def _options(self) -> dict:
        """The tasks' resources, spread over the nodes: the units are independent, and
        spreading keeps every node's workers fed when Ray hands a worker back between
        tasks (a lease lasts ~0.5 s, then the next task is scheduled anew)."""
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                "scheduling_strategy": "SPREAD"}

    def _slots(self, ray) -> int:
        """How many units the cluster runs at once (its CPUs, and GPUs if units take one)."""
        if not self.address:
            return max(1, int(self.workers // max(self.num_cpus, 1e-9)))
        total = ray.cluster_resources()
        slots = int(total.get("CPU", 1) // max(self.num_cpus, 1e-9))
        if self.num_gpus:
            slots = min(slots, int(total.get("GPU", 0) // self.num_gpus))
        return max(1, slots)

    def start(self, module: str | None = None) -> None:
        """Connect to the cluster (or start the local one) now, and start one warm-up task
        per unit the cluster can run at once: each starts a Ray worker process of this job
        and imports ``module`` (the unit function's) there, while this process goes on
        loading the tokenizer and planning, so the workers are ready when the units come
        (a job's Ray workers are its own: every job starts them anew). :meth:`run` uses
        the connection; :meth:`close` ends it."""
        if self._ray is not None:
            return
        ray = self._connect()
        try:
            warm = ray.remote(_warm_up).options(max_retries=0, **self._options())
            self._warm = [warm.remote(module) for _ in range(self._slots(ray))]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Cancel the warm-up tasks still running and disconnect (or stop the local
        cluster) if this executor connected."""
        ray, self._ray = self._ray, None
        warm, self._warm = self._warm, []
        if ray is None:
            return
        for ref in warm:
            with contextlib.suppress(Exception):
                ray.cancel(ref)
        if self._owned:
            self._owned = False
            ray.shutdown()

    def run(self, units: Sequence, fn: Callable, progress: Update | None = None) -> list:
        units = list(units)
        results: list = [None] * len(units)
        if not units:
            return results
        started = self._ray is not None  # by start(): its caller closes
        ray = self._connect()
        try:
            from ray.exceptions import RayTaskError

            task = ray.remote(_call).options(max_retries=self.retries,
                                             retry_exceptions=False, **self._options())
            fn_ref = ray.put(fn)
            attempts = [1] * len(units)
            pending = {task.remote(fn_ref, u): k for k, u in enumerate(units)}
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        k = pending.pop(ref)
                        try:
                            results[k] = ray.get(ref)
                        except RayTaskError as exc:
                            cause = getattr(exc, "cause", None)
                            if isinstance(cause, PythiaDataError):
                                raise cause from None
                            if attempts[k] > self.retries:
                                raise _failed(units[k], attempts[k], cause or exc) from None
                            attempts[k] += 1
                            pending[task.remote(fn_ref, units[k])] = k
                            continue
                        except ray.exceptions.RayError as exc:  # worker/node lost for good
                            raise _failed(units[k], attempts[k] + self.retries, exc) from None
                        if progress is not None:
                            progress(units[k].weight)
            finally:
                for ref in pending:
                    with contextlib.suppress(Exception):
                        ray.cancel(ref, force=True)
        finally:
            if not started:
                self.close()
        return results


def _warm_up(module: str | None) -> int:
    """A Ray worker's start: import the unit function's module (and with it the package,
    numpy, numba) before the first unit."""
    from pythia_data.jobs.startup import tune

    tune()
    if module and module != "__main__":
        import importlib

        importlib.import_module(module)
    return os.getpid()


def make_executor(name: str = "local", workers: int | None = None, *,
                  ray_address: str | None = None, gpus_per_unit: float = 0,
                  mode: str = LOCAL_MODES[0], retries: int = DEFAULT_RETRIES) -> Executor:
    """The executor a command's ``--executor/--workers/--ray-address`` ask for."""
    if name == "local":
        if ray_address:
            raise UsageError("--ray-address needs --executor ray")
        return LocalExecutor(workers, mode=mode, retries=retries)
    if name == "ray":
        ray_module()
        return RayExecutor(ray_address, workers, num_gpus=gpus_per_unit, retries=retries)
    raise UsageError(f"unknown executor {name!r} (choose from {', '.join(EXECUTORS)})")
