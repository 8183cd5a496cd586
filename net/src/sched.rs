//! The latency-critical threads' place on the CPU: the loop, and each
//! renderer's reader and voice threads.
//!
//! On 2 cores beside a video encoder, a waking loop thread under the kernel's
//! default fair-scheduler slice often waited for a busy core: an audio packet
//! handed to the loop reached the socket after up to 2-3 ms (p99), though the
//! loop's own work took ~0.1 ms. Linux 6.12+ (EEVDF) lets a thread ask for a
//! shorter slice, which gives it an earlier deadline and so the CPU soon after
//! it wakes, without real-time priority or any privilege. `portcast-bench
//! --seconds 60 ingest --audio` measured audio chunk -> packet p99 0.61 and
//! 0.43 ms with a 100 us slice against 3.34 and 3.19 ms without, video
//! unchanged (benches/results/README.md, "Scheduler slice"). Older kernels
//! ignore the request.

use std::io;
use std::time::Duration;

/// `struct sched_attr` of sched_setattr(2), first version (56 bytes).
#[cfg(target_os = "linux")]
#[repr(C)]
#[derive(Default)]
struct SchedAttr {
    size: u32,
    sched_policy: u32,
    sched_flags: u64,
    sched_nice: i32,
    sched_priority: u32,
    sched_runtime: u64,
    sched_deadline: u64,
    sched_period: u64,
    sched_util_min: u32,
    sched_util_max: u32,
}

/// Asks the scheduler for a `slice` of CPU at a time for the calling thread,
/// keeping its normal policy and nice value (the kernel clamps it to
/// 0.1-100 ms).
#[cfg(target_os = "linux")]
pub fn set_thread_slice(slice: Duration) -> io::Result<()> {
    // The thread's nice value is kept: sched_setattr sets it too.
    // SAFETY: getpriority only reads the caller's own scheduling state.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        sched_policy: libc::SCHED_OTHER as u32,
        sched_nice: nice,
        sched_runtime: u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX),
        ..SchedAttr::default()
    };
    // SAFETY: `attr` is a valid sched_attr of the size it declares, alive for
    // the call; pid 0 is the calling thread.
    let rc = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for `slice` (when set) for the calling thread, saying so in the
/// debug log; the loop thread reports the outcome at start-up.
pub fn apply_quietly(slice: Option<Duration>, thread: &str) {
    if let Some(slice) = slice {
        if let Err(e) = set_thread_slice(slice) {
            log::debug!("{thread}: no {} us scheduler slice: {e}", slice.as_micros());
        }
    }
}

/// Not available off Linux.
#[cfg(not(target_os = "linux"))]
pub fn set_thread_slice(_slice: Duration) -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "scheduler slices are a Linux feature",
    ))
}

/// The calling thread's slice as the kernel keeps it (for tests and logs).
#[cfg(target_os = "linux")]
pub fn thread_slice() -> io::Result<Duration> {
    let mut attr = SchedAttr::default();
    let size = std::mem::size_of::<SchedAttr>() as u32;
    // SAFETY: the kernel writes at most `size` bytes into `attr`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut attr as *mut SchedAttr,
            size,
            0,
        )
    };
    if rc == 0 {
        Ok(Duration::from_nanos(attr.sched_runtime))
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_thread_gets_the_slice_it_asks_for_within_the_kernels_bounds() {
        std::thread::spawn(|| {
            if thread_slice().unwrap().is_zero() {
                eprintln!(
                    "this kernel keeps no per-thread slice (before Linux 6.12): nothing to check"
                );
                return;
            }
            set_thread_slice(Duration::from_micros(100)).unwrap();
            assert_eq!(thread_slice().unwrap(), Duration::from_micros(100));
            // Below the least it takes, the kernel uses the least.
            set_thread_slice(Duration::from_micros(5)).unwrap();
            assert_eq!(thread_slice().unwrap(), Duration::from_micros(100));
        })
        .join()
        .unwrap();
    }
}
