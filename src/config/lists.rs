//! The settings that take several values or relate several: the UDP port range and its port
//! map, the avatar list (and the flags that change the test-pattern avatar), each avatar's own
//! ladder, and the allowed origins. Each reads its layers itself (a higher layer replaces the
//! lower one's value as a whole) and names the layer in its errors.

use super::*;

impl Layers<'_> {
    pub(super) fn udp_ports(&self, file: &mut FileLayer) -> Result<Vec<PortPair>, ConfigError> {
        let default = |key: &str| Origin::Default(key.to_string());
        let mut min = Sourced::new(*DEFAULT_UDP_PORTS.start(), default("webrtc_port_min"));
        let mut max = Sourced::new(*DEFAULT_UDP_PORTS.end(), default("webrtc_port_max"));
        for (key, slot) in [("webrtc_port_min", &mut min), ("webrtc_port_max", &mut max)] {
            if let Some(value) = file.take(key) {
                *slot = Sourced::new(file.value(key, &value, &Port)?, file.origin(key));
            }
        }
        let arg = Self::arg("udp_ports");
        let range = match self.env(&arg) {
            Some((text, origin)) => Some(Sourced::new(
                PortRange
                    .read(&text)
                    .map_err(|m| invalid(origin.clone(), m))?,
                origin,
            )),
            None => self
                .cli
                .udp_ports
                .clone()
                .map(|range| Sourced::new(range, Origin::Flag("--udp-ports".into()))),
        };
        if let Some(range) = range {
            min = Sourced::new(*range.value.start(), range.origin.clone());
            max = Sourced::new(*range.value.end(), range.origin);
        }
        if let Some(problem) = PortRange::problem(min.value, max.value) {
            let (low, high) = (min.value, max.value);
            if min.origin == max.origin {
                return Err(invalid(min.origin, format!("'{low}-{high}' {problem}")));
            }
            // Blame the layer the operator actually wrote, not the default it combined with.
            let blamed = if min.origin.is_default() {
                max.origin.clone()
            } else {
                min.origin.clone()
            };
            return Err(invalid(
                blamed,
                format!(
                    "port range {low}-{high} {problem} (min from {}, max from {})",
                    min.origin, max.origin
                ),
            ));
        }
        let map = self.port_map(file)?;
        pair_ports(min.value..=max.value, map)
    }

    /// `(local, public)` entries, each with its origin; ports checked, not yet against the range.
    pub(super) fn port_map(
        &self,
        file: &mut FileLayer,
    ) -> Result<Vec<Sourced<(u16, u16)>>, ConfigError> {
        let port = |side: &str, text: &str, origin: &Origin| {
            Port.read(text)
                .map_err(|m| invalid(origin.clone(), format!("{side} port {m}")))
        };
        if let Some((text, origin)) = self.list("port_map") {
            let mut entries = Vec::new();
            for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
                let bad = || {
                    invalid(
                        origin.clone(),
                        format!("'{item}' is not a LOCAL:PUBLIC port pair"),
                    )
                };
                let (local, public) = item.split_once(':').ok_or_else(bad)?;
                if read::integer(local).is_none() || read::integer(public).is_none() {
                    return Err(bad());
                }
                let pair = (
                    port("local", local, &origin)?,
                    port("public", public, &origin)?,
                );
                entries.push(Sourced::new(pair, origin.clone()));
            }
            file.take("port_map");
            return Ok(entries);
        }
        let Some(value) = file.take("port_map") else {
            return Ok(Vec::new());
        };
        let toml::Value::Table(table) = value else {
            return Err(invalid(
                file.origin("port_map"),
                "expected a table of LOCAL = PUBLIC ports",
            ));
        };
        let mut entries = Vec::new();
        for (local, public) in table {
            let origin = file.origin(&format!("port_map.{local}"));
            Port.read(&local).map_err(|m| invalid(origin.clone(), m))?;
            let public = toml_text(&public).map_err(|m| invalid(origin.clone(), m))?;
            let pair = (
                port("local", &local, &origin)?,
                port("public", &public, &origin)?,
            );
            entries.push(Sourced::new(pair, origin));
        }
        Ok(entries)
    }

    /// `AVATAR=LADDER` entries (`;` between them: a ladder has commas), from the
    /// environment or the flags, else the file's `[avatar_renditions]` table.
    pub(super) fn avatar_renditions(
        &self,
        file: &mut FileLayer,
    ) -> Result<BTreeMap<AvatarId, Vec<Rung>>, ConfigError> {
        let mut entries = Vec::new();
        if let Some((text, origin)) = self.list_joined("avatar_renditions", ";") {
            file.take("avatar_renditions");
            for item in text.split(';').map(str::trim).filter(|i| !i.is_empty()) {
                let (name, ladder) = item.split_once('=').ok_or_else(|| {
                    invalid(
                        origin.clone(),
                        format!(
                            "'{item}' is not AVATAR=RENDITIONS (e.g. tutor=540p@1200k,270p@300k)"
                        ),
                    )
                })?;
                entries.push((name.trim().to_string(), ladder.to_string(), origin.clone()));
            }
        } else if let Some(value) = file.take("avatar_renditions") {
            let toml::Value::Table(table) = value else {
                return Err(invalid(
                    file.origin("avatar_renditions"),
                    "expected a table of AVATAR = \"RENDITIONS\"",
                ));
            };
            for (name, ladder) in table {
                let origin = file.origin(&format!("avatar_renditions.{name}"));
                let ladder = toml_text(&ladder).map_err(|m| invalid(origin.clone(), m))?;
                entries.push((name, ladder, origin));
            }
        }
        let mut ladders = BTreeMap::new();
        for (name, ladder, origin) in entries {
            let avatar = Avatar.read(&name).map_err(|m| invalid(origin.clone(), m))?;
            let ladder = LadderText
                .read(&ladder)
                .map_err(|m| invalid(origin.clone(), format!("avatar '{avatar}': {m}")))?;
            if ladders.insert(avatar.clone(), ladder.0).is_some() {
                return Err(invalid(
                    origin,
                    format!("avatar '{avatar}' is given renditions more than once"),
                ));
            }
        }
        Ok(ladders)
    }

    pub(super) fn allowed_origins(&self, file: &mut FileLayer) -> Result<Vec<String>, ConfigError> {
        let items: Vec<(String, Origin)>;
        let list: Origin;
        if let Some((text, origin)) = self.list("allowed_origin") {
            file.take("allowed_origins");
            items = text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| (item.to_string(), origin.clone()))
                .collect();
            list = origin;
        } else if let Some(value) = file.take("allowed_origins") {
            list = file.origin("allowed_origins");
            let toml::Value::Array(array) = value else {
                return Err(invalid(list, "expected an array of origins"));
            };
            let mut texts = Vec::with_capacity(array.len());
            for (index, item) in array.iter().enumerate() {
                let origin = file.origin(&format!("allowed_origins[{index}]"));
                texts.push((
                    toml_text(item).map_err(|m| invalid(origin.clone(), m))?,
                    origin,
                ));
            }
            items = texts;
        } else {
            return Ok(Vec::new());
        }
        parse_origins(items, list)
    }

    pub(super) fn avatars(&self, file: &mut FileLayer) -> Result<Vec<AvatarConfig>, ConfigError> {
        let mut avatars = match file.take("avatar") {
            None => vec![AvatarConfig::default()],
            Some(value) => file.avatars(value)?,
        };
        let cli = self.cli;
        let flags = [
            (cli.width.is_some(), "--width"),
            (cli.height.is_some(), "--height"),
            (cli.fps.is_some(), "--fps"),
            (cli.bitrate_kbps.is_some(), "--bitrate-kbps"),
            (cli.encoder_threads.is_some(), "--encoder-threads"),
        ];
        let Some(first_flag) = flags.iter().find(|(set, _)| *set).map(|f| f.1) else {
            return Ok(avatars);
        };
        let Some(avatar) = avatars
            .iter_mut()
            .find(|avatar| avatar.name == DEFAULT_AVATAR_NAME)
        else {
            // Silently adding the avatar back would change which avatars are served.
            return Err(invalid(
                Origin::Flag(first_flag.to_string()),
                format!(
                    "no avatar named '{DEFAULT_AVATAR_NAME}' is configured to apply it to \
                     (the [[avatar]] list of the config file replaces the built-in one)"
                ),
            ));
        };
        avatar.width = cli.width.unwrap_or(avatar.width);
        avatar.height = cli.height.unwrap_or(avatar.height);
        avatar.fps = cli.fps.unwrap_or(avatar.fps);
        avatar.bitrate_bps = cli.bitrate_kbps.map_or(avatar.bitrate_bps, |k| k * 1000);
        avatar.encoder_threads = cli.encoder_threads.unwrap_or(avatar.encoder_threads);
        Ok(avatars)
    }
}

impl FileLayer {
    /// The `[[avatar]]` tables; each replaces the built-in list, missing keys take defaults.
    pub(super) fn avatars(&self, value: toml::Value) -> Result<Vec<AvatarConfig>, ConfigError> {
        let toml::Value::Array(tables) = value else {
            return Err(invalid(self.origin("avatar"), "expected [[avatar]] tables"));
        };
        if tables.is_empty() {
            return Err(invalid(
                self.origin("avatar"),
                "at least one avatar must be configured",
            ));
        }
        let mut avatars: Vec<AvatarConfig> = Vec::with_capacity(tables.len());
        for (index, table) in tables.into_iter().enumerate() {
            let at = format!("avatar[{index}]");
            let toml::Value::Table(mut table) = table else {
                return Err(invalid(self.origin(&at), "expected a table"));
            };
            let mut field = |name: &str| table.remove(name).map(|v| (format!("{at}.{name}"), v));
            let mut avatar = AvatarConfig::default();
            // A defaulted name can only clash with another entry, so blame this table.
            let mut name_key = at.clone();
            if let Some((key, value)) = field("name") {
                avatar.name = self.value(&key, &value, &Avatar)?;
                name_key = key;
            }
            if let Some((key, value)) = field("width") {
                avatar.width = self.value(&key, &value, &WIDTH)?;
            }
            if let Some((key, value)) = field("height") {
                avatar.height = self.value(&key, &value, &HEIGHT)?;
            }
            if let Some((key, value)) = field("fps") {
                avatar.fps = self.value(&key, &value, &FPS)?;
            }
            if let Some((key, value)) = field("bitrate_kbps") {
                avatar.bitrate_bps = self.value(&key, &value, &BITRATE_KBPS)? * 1000;
            }
            if let Some((key, value)) = field("encoder_threads") {
                avatar.encoder_threads = self.value(&key, &value, &ENCODER_THREADS)?;
            }
            if let Some((key, value)) = field("audio_bitrate_kbps") {
                avatar.audio_bitrate_kbps = Some(self.value(&key, &value, &AUDIO_BITRATE_KBPS)?);
            }
            if let Some(key) = table.keys().next() {
                return Err(invalid(
                    self.origin(&format!("{at}.{key}")),
                    "unknown key (an avatar has name, width, height, fps, bitrate_kbps, encoder_threads, audio_bitrate_kbps)",
                ));
            }
            if avatars.iter().any(|other| other.name == avatar.name) {
                return Err(invalid(
                    self.origin(&name_key),
                    format!("avatar name '{}' is used more than once", avatar.name),
                ));
            }
            avatars.push(avatar);
        }
        Ok(avatars)
    }
}

/// One [`PortPair`] per port of `range`, public ports from `map` (entries checked against the range).
fn pair_ports(
    range: RangeInclusive<u16>,
    map: Vec<Sourced<(u16, u16)>>,
) -> Result<Vec<PortPair>, ConfigError> {
    let (min, max) = (*range.start(), *range.end());
    let mut mapped: BTreeMap<u16, Sourced<u16>> = BTreeMap::new();
    for entry in map {
        let (local, public) = entry.value;
        if !range.contains(&local) {
            return Err(invalid(
                entry.origin,
                format!("local port {local} is outside the UDP port range {min}-{max}"),
            ));
        }
        if mapped.contains_key(&local) {
            return Err(invalid(
                entry.origin,
                format!("local port {local} is mapped more than once"),
            ));
        }
        mapped.insert(local, Sourced::new(public, entry.origin));
    }
    let mut pairs = Vec::with_capacity(range.len());
    let mut owner_of_public: HashMap<u16, u16> = HashMap::new();
    for local in range {
        let public = mapped.get(&local).map_or(local, |entry| entry.value);
        if let Some(previous) = owner_of_public.insert(public, local) {
            // Identity entries are distinct, so at least one side of a clash is a map entry.
            let origin = mapped
                .get(&local)
                .or_else(|| mapped.get(&previous))
                .map_or(Origin::Default("port_map".into()), |entry| {
                    entry.origin.clone()
                });
            return Err(invalid(
                origin,
                format!(
                    "public port {public} would be announced for both local ports {previous} and {local}"
                ),
            ));
        }
        pairs.push(PortPair { local, public });
    }
    Ok(pairs)
}

/// Checks and normalises origins, each `(text, where it was set)`; `*` alone allows any origin.
///
/// Browsers send `Origin` as `scheme://host[:port]`, lower-case, without a default port or a
/// trailing slash; entries are brought to that form so the server's exact comparison matches.
fn parse_origins(items: Vec<(String, Origin)>, list: Origin) -> Result<Vec<String>, ConfigError> {
    if items.iter().any(|(item, _)| item.trim() == "*") {
        if items.len() == 1 {
            return Ok(Vec::new());
        }
        return Err(invalid(
            list,
            "'*' allows any origin and cannot be combined with other origins",
        ));
    }
    let mut origins: Vec<String> = Vec::with_capacity(items.len());
    for (item, origin) in items {
        let normalised = normalise_origin(&item).map_err(|m| invalid(origin, m))?;
        if !origins.contains(&normalised) {
            origins.push(normalised);
        }
    }
    Ok(origins)
}

fn normalise_origin(text: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!("'{text}' is not an origin ({why}; expected scheme://host[:port], e.g. https://app.example.com)")
    };
    let trimmed = text.trim();
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| bad("no scheme://"))?;
    let scheme = scheme.to_ascii_lowercase();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(bad("bad scheme"));
    }
    if rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
        return Err(bad(
            "only scheme, host and port are compared: no path, query or user",
        ));
    }
    // A bracketed IPv6 host has colons of its own.
    let (host, port) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (address, after) = inner.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            if address.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad("bad IPv6 address"));
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or_else(|| bad("junk after ]"))?),
            };
            (format!("[{}]", address.to_ascii_lowercase()), port)
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            };
            let host_ok = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            if !host_ok {
                return Err(bad("bad host"));
            }
            (host.to_ascii_lowercase(), port)
        }
    };
    let port = match port {
        None => None,
        Some(port) => Some(
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad("bad port"))?,
        ),
    };
    Ok(match (scheme.as_str(), port) {
        // Browsers leave the scheme's default port out of Origin.
        ("http" | "ws", Some(80)) | ("https" | "wss", Some(443)) | (_, None) => {
            format!("{scheme}://{host}")
        }
        (_, Some(port)) => format!("{scheme}://{host}:{port}"),
    })
}
