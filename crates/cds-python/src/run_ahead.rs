//! The threads that prepare archived modules ahead of their import (see `loader::RunAhead`), and
//! what keeps them from crossing a `fork()`: a child process has only the thread that forked,
//! so a module being prepared at that moment would stay half-done in the child, and a lock the
//! thread held would stay locked. Before every `fork()` (a `pthread_atfork` handler, so forks
//! from C libraries count too), each running thread is told to stop after the module in hand
//! and is joined; the next import, in the parent or the child, starts a new one if there is
//! still something to prepare. Joining also keeps the count of threads at one across a fork,
//! which CPython 3.12+ checks to warn about forking a multi-threaded process.

use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use std::sync::{Arc, Mutex, Once, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::loader::LoadedArchive;

/// Each thread started and not yet joined, with the archive it works for and its kernel thread
/// id (set by the thread itself as it starts; 0 until then).
type Running = (Weak<LoadedArchive>, JoinHandle<()>, Arc<AtomicI32>);
static RUNNING: Mutex<Vec<Running>> = Mutex::new(Vec::new());
static AT_FORK: Once = Once::new();

/// Starts `body` on a thread of its own, working for `archive`. Returns whether it started (a
/// process at its thread limit simply does without).
pub fn spawn(archive: Weak<LoadedArchive>, body: impl FnOnce() + Send + 'static) -> bool {
    AT_FORK.call_once(|| {
        // SAFETY: registers a handler with no preconditions; `stop_all` is an `extern "C"` fn
        // that lives as long as the process (CPython never unloads extension modules).
        unsafe { libc::pthread_atfork(Some(stop_all), None, None) };
    });
    let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
    // Threads that exited on their own (idle) are joined here, so the list stays short.
    let (done, live): (Vec<_>, Vec<_>) =
        std::mem::take(&mut *running).into_iter().partition(|(_, h, _)| h.is_finished());
    *running = live;
    for (_, h, _) in done {
        let _ = h.join();
    }
    let tid = Arc::new(AtomicI32::new(0));
    let its_tid = Arc::clone(&tid);
    let body = move || {
        // The system call, not glibc's gettid() wrapper, which appeared in glibc 2.30: wheels
        // promise to run on older glibc (manylinux_2_28).
        // SAFETY: SYS_gettid takes no arguments, has no preconditions and cannot fail.
        its_tid.store(unsafe { libc::syscall(libc::SYS_gettid) } as i32, SeqCst);
        body()
    };
    // The thread starts with every signal blocked (a new thread inherits its creator's mask), so
    // that signals sent to the process always reach the interpreter's threads: CPython runs
    // Python handlers in the main thread, and a blocking call there returns early only if the
    // signal interrupts that thread.
    // SAFETY: `all` and `saved` are valid sigset_t values owned here; pthread_sigmask only
    // changes this thread's mask, which is restored right after the thread is created.
    let saved = unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut saved: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
        saved
    };
    let spawned = std::thread::Builder::new().name("pycds-prepare".into()).stack_size(256 << 10).spawn(body);
    // SAFETY: restores the mask saved above, for this thread only.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    match spawned {
        Ok(handle) => {
            running.push((archive, handle, tid));
            true
        }
        Err(_) => false,
    }
}

/// The `pthread_atfork` prepare handler: stops and joins every running thread. They never take
/// the GIL or any lock the forking thread may hold (only their archive's own state lock, which
/// no thread holds while it waits), so this always returns, after at most one module's
/// preparation.
extern "C" fn stop_all() {
    let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(|p| p.into_inner()));
    for (archive, handle, tid) in running {
        let archive = archive.upgrade();
        if let Some(a) = &archive {
            a.stop_running_ahead(false);
        }
        let _ = handle.join();
        gone_from_kernel(tid.load(SeqCst));
        if let Some(a) = &archive {
            a.may_run_ahead_again();
        }
    }
}

/// Waits (at most 50 ms) until the kernel no longer lists thread `tid` of this process. A join
/// returns when the thread has let go of its stack, a moment before the kernel removes it from
/// the process; a `fork()` in that moment would still count it (CPython 3.12+ then warns that
/// the process is multi-threaded), and so would `/proc/self/task` in the parent just after.
fn gone_from_kernel(tid: i32) {
    if tid <= 0 {
        return;
    }
    let path = format!("/proc/self/task/{tid}");
    let start = Instant::now();
    while std::path::Path::new(&path).exists() && start.elapsed() < Duration::from_millis(50) {
        std::thread::sleep(Duration::from_micros(20));
    }
}
