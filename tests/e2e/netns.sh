# The FRP-like NAT topology the end-to-end test and the glass-to-glass bench run in, and
# stop_pid, which both use. Sourced, not run. The caller sets C, P and D (namespace names, made here), keeps an array
# NETNS_MADE (filled here, for its cleanup) and defines log().
#
#   C (browser, 198.18.1.2) -- P (NAT box, 198.18.1.1 / 198.18.2.1) -- D (daemon, 198.18.2.2)
#
# P forwards TCP 10110 -> 198.18.2.2:9000 and UDP 10111-10115 -> 198.18.2.2:10111-10115 and
# masquerades, so the daemon sees the box, not the browser. Nothing has a default route:
# no packet can leave 198.18.0.0/15.

netns_up() { # builds the topology; returns non-zero (and says why) when it cannot
  local ns
  for ns in "$C" "$P" "$D"; do
    ip netns add "$ns" 2>/dev/null || { log "ip netns add not permitted"; return 1; }
    NETNS_MADE+=("$ns")
    ip -n "$ns" link set lo up || return 1
  done
  # Veth pairs are created straight inside the namespaces: nothing touches the host's own.
  ip -n "$C" link add vc type veth peer name vp netns "$P" || return 1
  ip -n "$P" link add vq type veth peer name vd netns "$D" || return 1
  ip -n "$C" addr add 198.18.1.2/24 dev vc || return 1
  ip -n "$P" addr add 198.18.1.1/24 dev vp || return 1
  ip -n "$P" addr add 198.18.2.1/24 dev vq || return 1
  ip -n "$D" addr add 198.18.2.2/24 dev vd || return 1
  ip -n "$C" link set vc up || return 1
  ip -n "$P" link set vp up || return 1
  ip -n "$P" link set vq up || return 1
  ip -n "$D" link set vd up || return 1
  # The daemon sends a viewer's datagrams of a picture as one UDP GSO message; a real NIC
  # puts them on the wire one by one. So does vd (one segment per skb), so the NAT box and its
  # tbf see datagrams, not 8 KB super-packets that a full queue would drop whole.
  ip -n "$D" link set vd gso_max_segs 1 || return 1
  # No default routes anywhere: nothing in these namespaces can reach beyond 198.18.0.0/15.
  ip -n "$C" route add 198.18.2.0/24 via 198.18.1.1 || return 1
  ip -n "$D" route add 198.18.1.0/24 via 198.18.2.1 || return 1
  ip netns exec "$P" sysctl -qw net.ipv4.ip_forward=1 || return 1
  for ns in "$C" "$P" "$D"; do # IPv4 only: no IPv6 link-local chatter on the veths
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
  done

  local ipt
  for ipt in iptables iptables-legacy; do
    command -v "$ipt" >/dev/null || continue
    if ip netns exec "$P" "$ipt" -t nat -A PREROUTING -d 198.18.1.1 -p tcp --dport 10110 \
         -j DNAT --to-destination 198.18.2.2:9000 2>/dev/null &&
       ip netns exec "$P" "$ipt" -t nat -A PREROUTING -d 198.18.1.1 -p udp --dport 10111:10115 \
         -j DNAT --to-destination 198.18.2.2 &&
       ip netns exec "$P" "$ipt" -t nat -A POSTROUTING -o vq -j MASQUERADE; then
      log "NAT box uses $ipt ($("$ipt" --version 2>/dev/null))"
      return 0
    fi
    ip netns exec "$P" "$ipt" -t nat -F 2>/dev/null || true
  done
  log "iptables NAT unusable in a namespace"
  return 1
}

netns_down() { # kills what still runs inside the namespaces made here (e.g. a stray Chromium), deletes them
  local ns pid
  for ns in "${NETNS_MADE[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  NETNS_MADE=()
}

stop_pid() { # stop one process we started: TERM, up to 3 s, then KILL
  local pid=$1
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

