//! Tests of `ingest`.

use super::*;

#[test]
fn per_avatar_counters_are_bounded_and_kept_across_reconnects() {
    let (frames, _rx) = std::sync::mpsc::sync_channel(1);
    let (shared, _poll) = Shared::for_test(frames);
    let first = shared
        .avatar_counters(&AvatarId::parse("a0").unwrap())
        .unwrap();
    first.add(Stat::FramesReceived, 3);
    // The same id again (a renderer that reconnects) continues its counters.
    let again = shared
        .avatar_counters(&AvatarId::parse("a0").unwrap())
        .unwrap();
    assert_eq!(again.frames_received.get(), 3);
    for i in 1..MAX_TRACKED_AVATARS {
        assert!(shared
            .avatar_counters(&AvatarId::parse(&format!("a{i}")).unwrap())
            .is_some());
    }
    // Renderers choose their ids: past the bound, only the hub counts.
    assert!(shared
        .avatar_counters(&AvatarId::parse("one-too-many").unwrap())
        .is_none());
    assert_eq!(lock(&shared.per_avatar).len(), MAX_TRACKED_AVATARS);
}
