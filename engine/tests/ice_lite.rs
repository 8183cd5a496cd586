//! The ICE agent portcast answers with, str0m's `is` crate as patched in
//! `vendor/is` (see its PORTCAST.md): an ice-lite answerer sends on the pair of
//! the first authenticated check, before the browser nominates one, so the DTLS
//! answer to a ClientHello never waits for the browser's next check (~50 ms in
//! Chromium). A nomination still decides the send path in the end.

use std::net::SocketAddr;
use std::time::Instant;

use str0m::ice::{IceAgent, IceAgentEvent, IceCreds, StunMessage, StunPacket, TransId};
use str0m::net::Protocol;
use str0m::{Candidate, IceConnectionState};

const LOCAL: &str = "198.18.1.1:10111";
const BROWSER: &str = "198.18.2.1:50000";
const OTHER: &str = "198.18.2.1:50001";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

fn hmac_sha1(key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
    // In here: KeyInit::new would shadow IceAgent's constructors.
    use hmac::{Hmac, KeyInit, Mac};
    use sha1::Sha1;
    let mut mac = Hmac::<Sha1>::new_from_slice(key).expect("any key length");
    for p in payloads {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// STUN's HMAC-SHA1 for the agent (str0m builds it without a default provider).
#[derive(Debug)]
struct Sha1Hmac;

impl str0m::crypto::Sha1HmacProvider for Sha1Hmac {
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        hmac_sha1(key, payloads)
    }
}

/// portcast's side: ice-lite, controlled, one host candidate, the browser's credentials known.
fn answerer() -> (IceAgent, IceCreds) {
    let mut agent = IceAgent::with_hmac(IceCreds::new(), &Sha1Hmac);
    agent.set_ice_lite(true);
    agent.set_controlling(false);
    agent
        .add_local_candidate(Candidate::host(addr(LOCAL), "udp").expect("candidate"))
        .expect("added");
    let browser = IceCreds::new();
    agent.set_remote_credentials(browser.clone());
    (agent, browser)
}

/// A browser's connectivity check from `from`, signed with `password`.
fn check(agent: &mut IceAgent, browser: &IceCreds, from: &str, nominate: bool, password: &str) {
    let local = agent.local_credentials().clone();
    let username = format!("{}:{}", local.ufrag, browser.ufrag);
    let req = StunMessage::binding_request(&username, TransId::new(), true, 7, 1_000_000, nominate);
    let mut buf = vec![0u8; 1500];
    let n = req
        .to_bytes(Some(password.as_bytes()), &mut buf, hmac_sha1)
        .expect("serializes");
    let message = StunMessage::parse(&buf[..n]).expect("parses");
    agent.handle_packet(
        Instant::now(),
        StunPacket {
            proto: Protocol::Udp,
            source: addr(from),
            destination: addr(LOCAL),
            message,
        },
    );
    agent.handle_timeout(Instant::now());
}

/// Where the agent was told to send, in order.
fn send_paths(agent: &mut IceAgent) -> Vec<SocketAddr> {
    std::iter::from_fn(|| agent.poll_event())
        .filter_map(|e| match e {
            IceAgentEvent::NominatedSend { destination, .. } => Some(destination),
            _ => None,
        })
        .collect()
}

#[test]
fn an_ice_lite_answerer_sends_on_the_first_checked_pair_before_any_nomination() {
    let (mut agent, browser) = answerer();
    let password = agent.local_credentials().pass.clone();
    check(&mut agent, &browser, BROWSER, false, &password);
    assert_eq!(send_paths(&mut agent), vec![addr(BROWSER)]);
    // Sending is not a nomination: ICE is not completed until the browser nominates.
    assert_ne!(agent.state(), IceConnectionState::Completed);
    // A second check on the same pair changes nothing.
    check(&mut agent, &browser, BROWSER, false, &password);
    assert_eq!(send_paths(&mut agent), Vec::<SocketAddr>::new());
    check(&mut agent, &browser, BROWSER, true, &password);
    assert_eq!(agent.state(), IceConnectionState::Completed);
}

#[test]
fn the_browsers_nomination_still_moves_the_send_path() {
    let (mut agent, browser) = answerer();
    let password = agent.local_credentials().pass.clone();
    check(&mut agent, &browser, BROWSER, false, &password);
    assert_eq!(send_paths(&mut agent), vec![addr(BROWSER)]);
    check(&mut agent, &browser, OTHER, true, &password);
    assert_eq!(send_paths(&mut agent), vec![addr(OTHER)]);
}

#[test]
fn a_check_that_fails_its_integrity_selects_nothing() {
    let (mut agent, browser) = answerer();
    check(
        &mut agent,
        &browser,
        BROWSER,
        false,
        "not-the-password-at-all",
    );
    assert_eq!(send_paths(&mut agent), Vec::<SocketAddr>::new());
}
