//! Starting a server: every socket bound once, the sources started, the
//! engine built; the signaling port listens last.

use super::*;

impl Server {
    /// Binds every socket (once, at start), starts the sources, and builds the engine.
    /// The signaling port starts listening last, when everything else exists: a
    /// client that can connect to it can also use the UDP ports and the ingest socket.
    pub fn bind(mut config: ServerConfig) -> Result<Server, NetError> {
        let poll = Poll::new()?;
        // ICE-TCP shares the signaling listener: a connection may be framed only if it is on.
        config.limits.ice_tcp = config.engine.ice_tcp.is_some();
        // The signaling port is claimed first (a port in use fails before any
        // thread starts) but listens last: once it accepts a connection, every
        // UDP socket, the ingest socket and every source already exist, so
        // "the port accepts" means "the daemon is ready" for anyone waiting on it.
        let signal_addr = SocketAddr::new(config.bind_ip, config.signal_port);
        let signal_socket =
            claim_tcp_port(signal_addr).map_err(|e| NetError::Bind(signal_addr, e))?;
        let signal_addr = signal_socket
            .local_addr()?
            .as_socket()
            .unwrap_or(signal_addr);
        let mut udp = Vec::new();
        let mut specs = Vec::new();
        for (i, p) in config.udp_ports.iter().enumerate() {
            let local = SocketAddr::new(config.bind_ip, p.local_port);
            let mut port = UdpPort::bind(local).map_err(|e| NetError::Bind(local, e))?;
            poll.registry().register(
                &mut port.socket,
                Token(UDP_BASE + i),
                Interest::READABLE | Interest::WRITABLE,
            )?;
            // With port 0 (tests) the public port follows the bound one.
            let public = if p.public.port() == 0 {
                SocketAddr::new(p.public.ip(), port.local.port())
            } else {
                p.public
            };
            specs.push(SocketSpec {
                local: port.local,
                public,
            });
            udp.push(port);
        }
        if udp.iter().all(UdpPort::segments) {
            log::info!("UDP GSO on: a viewer's datagrams of one picture leave as one message");
        } else {
            log::info!("UDP GSO off (the kernel has no UDP_SEGMENT): datagrams leave one by one");
        }
        config.engine.sockets = specs;
        config.engine.avatars = config.avatars.iter().map(|a| a.name.clone()).collect();
        config.engine.audio_avatars = config
            .avatars
            .iter()
            .filter(|a| a.audio.is_some())
            .map(|a| a.name.clone())
            .collect();
        for f in &config.file_sources {
            if !config.engine.avatars.contains(&f.name) {
                config.engine.avatars.push(f.name.clone());
            }
        }
        let engine =
            Engine::new(config.engine.clone(), Instant::now()).map_err(NetError::Engine)?;
        let metrics = Metrics::new(engine.stats(), config.ingest.is_some());
        for port in &mut udp {
            port.counters = metrics.udp(&port.local.to_string());
        }
        let capture =
            OfferCapture::new(config.capture_offers.clone()).map_err(NetError::Capture)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (tx, frames): (SyncSender<SourceEvent>, _) = mpsc::sync_channel(CHANNEL_DEPTH);
        let mut sources = HashMap::new();
        for a in &config.avatars {
            let h = source::spawn_test_pattern(
                a,
                config.engine.ladders.of(&a.name),
                metrics.source(a.name.as_str()),
                tx.clone(),
                waker.clone(),
            )
            .map_err(|e| NetError::Source(a.name.to_string(), e))?;
            sources.insert(a.name.clone(), h);
        }
        for f in &config.file_sources {
            let h = crate::y4m::spawn(
                f,
                config.engine.ladders.of(&f.name),
                metrics.source(f.name.as_str()),
                tx.clone(),
                waker.clone(),
            )
            .map_err(NetError::File)?;
            sources.insert(f.name.clone(), h);
        }
        let ingest = match config.ingest.clone() {
            Some(ic) => Some(
                IngestHub::bind(
                    IngestConfig {
                        latency_slice: config.latency_slice,
                        ladders: config.engine.ladders.clone(),
                        ..ic
                    },
                    sources.keys().cloned(),
                    tx,
                    waker.clone(),
                    metrics.ingest(),
                    poll.registry(),
                    INGEST,
                )
                .map_err(NetError::Ingest)?,
            ),
            None => None,
        };
        let signals = if config.handle_signals {
            let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
            poll.registry()
                .register(&mut signals, SIGNALS, Interest::READABLE)?;
            Some(signals)
        } else {
            None
        };
        signal_socket
            .listen(LISTEN_BACKLOG)
            .map_err(|e| NetError::Bind(signal_addr, e))?;
        let mut listener = TcpListener::from_std(signal_socket.into());
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let ice_tcp_listener = match config.ice_tcp_port.filter(|_| config.limits.ice_tcp) {
            Some(port) => {
                let addr = SocketAddr::new(config.bind_ip, port);
                let socket = claim_tcp_port(addr).map_err(|e| NetError::Bind(addr, e))?;
                socket
                    .listen(LISTEN_BACKLOG)
                    .map_err(|e| NetError::Bind(addr, e))?;
                let mut l = TcpListener::from_std(socket.into());
                poll.registry()
                    .register(&mut l, ICE_TCP_LISTENER, Interest::READABLE)?;
                log::info!("ICE-TCP listener on {}", l.local_addr()?);
                Some(l)
            }
            None => None,
        };
        Ok(Server {
            poll,
            listener,
            ice_tcp_listener,
            udp,
            engine,
            conns: HashMap::new(),
            next_conn: CONN_BASE,
            sources,
            frames,
            frames_left: false,
            stop: Arc::new(AtomicBool::new(false)),
            reloader: None,
            waker,
            signals,
            capture,
            whep: whep::Whep::default(),
            ice_tcp: HashMap::new(),
            ingest,
            config,
            recv_buf: vec![0u8; 2048].into_boxed_slice(),
            signal_addr,
            datagrams_sent: 0,
            closed_since_trim: 0,
            last_trim: Instant::now(),
            metrics,
        })
    }
}

/// Pending connections the kernel queues for the signaling listener.
const LISTEN_BACKLOG: i32 = 1024;

/// A non-blocking TCP socket bound to `addr` but not yet listening (see
/// [`Server::bind`]); `SO_REUSEADDR` as mio's own `TcpListener::bind` sets it,
/// so a restart does not wait for TIME_WAIT.
fn claim_tcp_port(addr: SocketAddr) -> io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}
