//! One H.264 frame fanned out to many viewers is packetized once: every
//! viewer's packets hold the same payload bytes (the vendored str0m's
//! `SharedH264`, `vendor/str0m/PORTCAST.md`), so what the engine allocates per
//! viewer for a frame is about one encrypted copy of it, not three copies.

mod util;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::time::Duration;

use portcast_engine::EngineConfig;
use util::*;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

/// The system allocator, counting the bytes the current thread asks for while
/// [`allocated_during`] runs.
struct Counting;

// SAFETY: every call goes straight to `System`; only a thread-local counter
// (const-initialised, no destructor, so touching it never allocates) is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size.saturating_sub(layout.size()));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

fn count(bytes: usize) {
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCATED.try_with(|a| a.set(a.get() + bytes as u64));
        }
    });
}

/// Bytes this thread allocated while `f` ran.
fn allocated_during(f: impl FnOnce()) -> u64 {
    ALLOCATED.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCATED.with(Cell::get)
}

#[test]
fn a_frame_to_many_viewers_is_packetized_once() {
    // No estimation: no pacer, so each viewer's packets are encrypted and
    // handed out within `handle_access_unit`.
    let config = EngineConfig {
        sockets: sockets("127.0.0.1", 10111),
        bandwidth_estimation: None,
        ..EngineConfig::default()
    };
    let mut w = World::new(config, 640, 360);
    let n = 12;
    for i in 0..n {
        w.add_viewer(
            &format!("viewer-{i}"),
            addr(&format!("127.0.0.1:{}", 40000 + i)),
        );
    }
    w.run(Duration::from_secs(2));
    let decoded: Vec<usize> = w.viewers.iter().map(|v| v.counters.len()).collect();
    assert!(
        decoded.iter().all(|&d| d > 0),
        "every viewer decodes: {decoded:?}"
    );

    // A keyframe: several packets, several NAL units.
    w.source.force_idr = true;
    let au = w.source.next(w.now).expect("a picture");
    assert!(
        au.keyframe && au.data.len() > 3000,
        "{} bytes",
        au.data.len()
    );
    let avatar = w.source.avatar.clone();
    let bytes = allocated_during(|| w.engine.handle_access_unit(w.now, &avatar, &au));
    w.pump();

    // The shared packets decode: every viewer shows this picture.
    for (v, before) in w.viewers.iter().zip(&decoded) {
        assert_eq!(v.counters.len(), before + 1, "{} decoded it", v.session_id);
    }
    // Per viewer: its encrypted datagrams (the frame plus RTP and SRTP
    // overhead) and bookkeeping, and the first viewer's packetizing shared
    // out. Packetizing per viewer allocated about three times the frame per
    // viewer (each NAL copied into a `Vec`, that `Vec` into the packet's
    // `Arc`, then the encrypted datagram).
    let per_viewer = bytes / n as u64;
    let frame = au.data.len() as u64;
    assert!(
        per_viewer < frame * 2,
        "{per_viewer} bytes allocated per viewer for a {frame}-byte keyframe ({bytes} for {n})"
    );
}
