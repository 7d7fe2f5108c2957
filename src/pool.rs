//! Parallel loops for the kernels that run between libtorch's matrix products.
//!
//! libtorch runs its products on an OpenMP team whose threads keep spinning for a while after each
//! product. A kernel that runs next on a second pool (rayon's) fights those spinning threads for
//! the cores: on two cores the fused activation and loss kernels of the native sweep ran at about
//! half the memory bandwidth. Where libtorch's libgomp is loaded in this process (the PyPI wheels
//! on Linux), these loops run on that same team instead, through `GOMP_parallel`: the threads
//! that were spinning pick up the work at once. Elsewhere (no libgomp loaded, other platforms)
//! they run on rayon's pool, as they do when the environment variable `LINPATH_NO_OPENMP` is set
//! (read once, at the first loop: for comparing the two).
//!
//! The tasks are plain Rust on raw buffers: no tch op runs inside them.

use rayon::prelude::*;
use std::ffi::c_void;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// `GOMP_parallel(fn, data, num_threads, flags)`: libgomp's entry point of `#pragma omp parallel`.
type GompParallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, u32, u32);

/// libgomp's `GOMP_parallel` when libgomp is already loaded in this process (never loads it).
fn gomp_parallel() -> Option<GompParallel> {
    static GOMP: OnceLock<Option<usize>> = OnceLock::new();
    let address = *GOMP.get_or_init(|| {
        if std::env::var_os("LINPATH_NO_OPENMP").is_some() {
            return None;
        }
        find_gomp_parallel()
    });
    // SAFETY: the address is that of libgomp's GOMP_parallel, whose C signature is GompParallel.
    address.map(|a| unsafe { std::mem::transmute::<usize, GompParallel>(a) })
}

#[cfg(target_os = "linux")]
fn find_gomp_parallel() -> Option<usize> {
    // SAFETY: dlopen with RTLD_NOLOAD only returns a handle to a library already loaded (it loads
    // nothing and runs no constructor); dlsym reads a symbol's address. The handle's reference is
    // kept: libtorch, which loaded libgomp, stays loaded for the life of the process anyway.
    unsafe {
        let handle = libc::dlopen(c"libgomp.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD);
        if handle.is_null() {
            return None;
        }
        let symbol = libc::dlsym(handle, c"GOMP_parallel".as_ptr());
        (!symbol.is_null()).then_some(symbol as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn find_gomp_parallel() -> Option<usize> {
    None
}

/// Whether [`for_each_task`] runs on libtorch's OpenMP team (else on rayon's pool).
pub fn uses_openmp() -> bool {
    gomp_parallel().is_some()
}

/// One parallel loop handed to the OpenMP team: every thread takes the next task until none is
/// left; the first panic is kept and raised again on the calling thread.
struct Loop<'a> {
    next: AtomicUsize,
    tasks: usize,
    task: &'a (dyn Fn(usize) + Sync),
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

extern "C" fn run_loop(data: *mut c_void) {
    // SAFETY: `data` is the `Loop` that `for_each_task` keeps alive until GOMP_parallel returns.
    let job = unsafe { &*(data as *const Loop) };
    loop {
        let i = job.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.tasks {
            return;
        }
        // A panic must not unwind into libgomp: it is caught, the loop stops, the caller re-raises.
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| (job.task)(i))) {
            job.next.store(job.tasks, Ordering::Relaxed);
            job.panic.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(panic);
            return;
        }
    }
}

/// Runs `task(i)` for every `i` in `0..tasks`, in parallel on libtorch's threads (as many as
/// `tch::get_num_threads()`; one runs them in order on the calling thread), in any order.
pub fn for_each_task(tasks: usize, task: &(dyn Fn(usize) + Sync)) {
    let threads = tch::get_num_threads().max(1) as usize;
    if tasks <= 1 || threads == 1 {
        (0..tasks).for_each(task);
        return;
    }
    run_on(gomp_parallel(), tasks, threads, task);
}

/// [`for_each_task`] on libgomp's team (`Some`) or rayon's pool (`None`).
fn run_on(gomp: Option<GompParallel>, tasks: usize, threads: usize, task: &(dyn Fn(usize) + Sync)) {
    let Some(parallel) = gomp else {
        (0..tasks).into_par_iter().for_each(task);
        return;
    };
    let job = Loop { next: AtomicUsize::new(0), tasks, task, panic: Mutex::new(None) };
    let team = threads.min(tasks) as u32;
    // SAFETY: `run_loop` only reads `job` through a shared reference, and `job` outlives the call:
    // GOMP_parallel returns after every thread of the team has finished.
    unsafe { parallel(run_loop, &job as *const Loop as *mut c_void, team, 0) };
    if let Some(panic) = job.panic.into_inner().unwrap_or_else(|e| e.into_inner()) {
        resume_unwind(panic);
    }
}

/// A raw pointer that may be shared between the threads of one loop (each touches its own part).
struct Shared<T>(*mut T);
// SAFETY: `for_each_chunk_mut` hands each task a disjoint part of the slice behind the pointer.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so that closures capture the whole `Shared`, which is `Sync`).
    fn get(&self) -> *mut T {
        self.0
    }
}

/// Runs `f(i, chunk)` on every `chunk`-long piece of `out` (the last may be shorter), in parallel
/// as [`for_each_task`]: piece `i` starts at `i * chunk`.
pub fn for_each_chunk_mut<T: Send>(out: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunk = chunk.max(1);
    let (len, base) = (out.len(), Shared(out.as_mut_ptr()));
    for_each_task(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        let n = chunk.min(len - start);
        // SAFETY: pieces [i·chunk, i·chunk + n) are disjoint, in bounds, and `out` is borrowed
        // mutably for the whole loop.
        let piece = unsafe { std::slice::from_raw_parts_mut(base.get().add(start), n) };
        f(i, piece);
    });
}

/// `f(i)` for every `i` in `0..tasks`, computed in parallel as [`for_each_task`], in order of `i`.
pub fn map_tasks<R: Send + Default>(tasks: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let mut out: Vec<R> = (0..tasks).map(|_| R::default()).collect();
    for_each_chunk_mut(&mut out, 1, |i, slot| slot[0] = f(i));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_threads<R>(n: i64, f: impl FnOnce() -> R) -> R {
        let before = tch::get_num_threads();
        tch::set_num_threads(n as i32);
        let r = f();
        tch::set_num_threads(before);
        r
    }

    #[test]
    fn every_task_runs_exactly_once_on_any_thread_count() {
        for threads in [1, 2, 4] {
            for tasks in [0usize, 1, 2, 3, 17, 1000] {
                let counts: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
                on_threads(threads, || {
                    for_each_task(tasks, &|i| {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    })
                });
                assert!(
                    counts.iter().all(|c| c.load(Ordering::Relaxed) == 1),
                    "{threads} threads, {tasks} tasks"
                );
            }
        }
    }

    #[test]
    fn both_pools_run_every_task_once() {
        assert!(uses_openmp(), "libtorch's libgomp is loaded in this test binary");
        for gomp in [gomp_parallel(), None] {
            let counts: Vec<AtomicUsize> = (0..500).map(|_| AtomicUsize::new(0)).collect();
            run_on(gomp, counts.len(), 2, &|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 1));
        }
    }

    #[test]
    fn chunks_cover_the_slice_and_results_keep_their_order() {
        let mut out = vec![0usize; 1001];
        on_threads(2, || for_each_chunk_mut(&mut out, 64, |i, piece| piece.iter_mut().for_each(|v| *v = i)));
        assert!(out.iter().enumerate().all(|(j, &v)| v == j / 64));
        let squares = on_threads(2, || map_tasks(300, |i| (i * i) as u64));
        assert_eq!(squares, (0..300u64).map(|i| i * i).collect::<Vec<_>>());
    }

    #[test]
    fn a_panicking_task_is_raised_on_the_calling_thread() {
        let caught =
            on_threads(2, || catch_unwind(|| for_each_task(100, &|i| assert!(i != 37, "task 37 fails"))));
        let message = caught.expect_err("the panic must reach the caller");
        let text = message
            .downcast_ref::<&str>()
            .map(|m| m.to_string())
            .or(message.downcast_ref::<String>().cloned());
        assert!(text.is_some_and(|m| m.contains("task 37 fails")));
        // The team is usable afterwards.
        assert_eq!(on_threads(2, || map_tasks(10, |i| i)), (0..10).collect::<Vec<_>>());
    }
}
