//! Addresses and sockets: parsing `HOST:PORT` and `[ADDR:]PORT`, the
//! listening socket (dual-stack by default), accepting one connection,
//! connecting with a timeout (from a chosen local address with `--bind`),
//! closing with a reset, and the socket options zcp sets, among them
//! `--limit`'s pacing rate.
//!
//! Socket buffer sizes are deliberately left alone: pinning SO_SNDBUF or
//! SO_RCVBUF turns off the kernel's autotuning and measured no faster.

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use socket2::{Domain, Protocol, Socket, Type};

use crate::error::interrupted_io;
use crate::sys::signals;

/// The port zcp listens on by default.
pub const DEFAULT_PORT: u16 = 7227;

/// How long `zcp send` waits for a connection to be accepted.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// A remote endpoint as the user typed it: a name or address, and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

fn parse_port(s: &str, whole: &str) -> Result<u16, String> {
    s.parse::<u16>()
        .map_err(|_| format!("invalid port {s:?} in {whole:?} (expected 0-65535)"))
}

/// Parses `HOST:PORT`, `IPV4:PORT` or `[IPV6]:PORT`.
pub fn parse_host_port(s: &str) -> Result<HostPort, String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("missing ']' in {s:?}"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("missing :PORT after [{host}] in {s:?}"))?;
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        return Ok(HostPort {
            host: host.to_string(),
            port: parse_port(port, s)?,
        });
    }
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} is not HOST:PORT (e.g. example.org:{DEFAULT_PORT})"))?;
    if host.is_empty() {
        return Err(format!("missing host in {s:?}"));
    }
    if host.contains(':') {
        return Err(format!("IPv6 addresses need brackets: [{host}]:{port}"));
    }
    Ok(HostPort {
        host: host.to_string(),
        port: parse_port(port, s)?,
    })
}

/// What `--listen` asked for: an optional address and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    pub host: Option<String>,
    pub port: u16,
}

impl Default for ListenSpec {
    fn default() -> Self {
        ListenSpec {
            host: None,
            port: DEFAULT_PORT,
        }
    }
}

/// Parses `PORT`, `ADDR:PORT` or `[IPV6]:PORT`.
pub fn parse_listen(s: &str) -> Result<ListenSpec, String> {
    if !s.contains(':') {
        return Ok(ListenSpec {
            host: None,
            port: parse_port(s, s)?,
        });
    }
    let hp = parse_host_port(s)?;
    Ok(ListenSpec {
        host: Some(hp.host),
        port: hp.port,
    })
}

/// `peer` as typed, with the address it resolved to when that reads
/// differently: `server:7227 (10.0.0.2:7227)`.
pub fn show_resolved(peer: &str, addr: SocketAddr) -> String {
    let resolved = show_addr(addr);
    if resolved == peer {
        resolved
    } else {
        format!("{peer} ({resolved})")
    }
}

/// Shows IPv4-mapped IPv6 peers (from a dual-stack socket) as IPv4.
pub fn show_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()).to_string(),
            None => addr.to_string(),
        },
        SocketAddr::V4(_) => addr.to_string(),
    }
}

/// socket2 creates sockets close-on-exec.
fn bind(addr: SocketAddr, dual_stack: bool) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if dual_stack {
        socket.set_only_v6(false)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// Binds the listening socket. Without an address it binds `[::]` accepting
/// IPv4 too, or `0.0.0.0` where IPv6 is unavailable.
pub fn listen(spec: &ListenSpec) -> Result<TcpListener> {
    let port = spec.port;
    let Some(host) = &spec.host else {
        let any6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port);
        return match bind(any6, true) {
            Ok(l) => Ok(l),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)) => {
                let any4 = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), port);
                bind(any4, false).with_context(|| format!("listening on port {port}"))
            }
            Err(e) => Err(e).with_context(|| format!("listening on port {port}")),
        };
    };
    let addr = (host.as_str(), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving listen address {host}"))?
        .next()
        .ok_or_else(|| anyhow!("listen address {host} resolves to nothing"))?;
    bind(addr, false).with_context(|| format!("listening on {}", show_addr(addr)))
}

/// Accepts one connection; SIGINT/SIGTERM end the wait.
pub fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let socket = socket2::SockRef::from(listener);
    loop {
        match socket.accept() {
            Ok((s, addr)) => {
                let peer = addr
                    .as_socket()
                    .unwrap_or_else(|| SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0));
                let stream: TcpStream = s.into();
                tune(&stream)?;
                return Ok((stream, peer));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                if signals::interrupted() {
                    return Err(interrupted_io());
                }
            }
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNABORTED | libc::EPROTO)) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Parses `--bind`: an IPv4 or IPv6 address (brackets allowed), no port.
pub fn parse_bind(s: &str) -> Result<IpAddr, String> {
    let bare = s.strip_prefix('[').and_then(|r| r.strip_suffix(']')).unwrap_or(s);
    bare.parse::<IpAddr>().map_err(|_| {
        format!("{s:?} is not an IP address (--bind takes an address of this machine, such as 192.0.2.7 or ::1, without a port)")
    })
}

/// Connects to the first address of `target` that answers, from `bind`
/// when given (only addresses of its family are tried). Errors do not
/// repeat `target` (the caller names it): `connecting: Connection
/// refused`, `connecting to 10.0.0.5:7227: ...` when a name resolved,
/// `resolving host: ...`, `binding to ADDR (--bind): ...`. A name that
/// does not resolve (to anything) is a host that cannot be reached, as a
/// refused or timed-out connection is: a network failure.
pub fn connect(target: &HostPort, bind: Option<IpAddr>) -> Result<(TcpStream, SocketAddr)> {
    let mut addrs: Vec<SocketAddr> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(unreachable)
        .with_context(|| format!("resolving {}", target.host))?
        .collect();
    if let Some(local) = bind {
        let resolved = addrs.len();
        addrs.retain(|a| a.is_ipv4() == local.is_ipv4());
        if addrs.is_empty() && resolved > 0 {
            return Err(anyhow!(family_mismatch(local, &target.host)));
        }
    }
    let mut last = None;
    for addr in addrs {
        if signals::interrupted() {
            return Err(interrupted_io().into());
        }
        match open(addr, bind) {
            Ok(s) => {
                tune(&s)?;
                return Ok((s, addr));
            }
            Err(Attempt::Bind(ip, e)) => return Err(e).with_context(|| format!("binding to {ip} (--bind)")),
            Err(Attempt::Connect(e)) => last = Some((addr, e)),
        }
    }
    match last {
        // The I/O error stays in the chain: `send --retries` looks at it.
        Some((addr, e)) if addr.to_string() == target.to_string() => Err(anyhow::Error::new(e).context("connecting")),
        Some((addr, e)) => Err(anyhow::Error::new(e).context(format!("connecting to {}", show_addr(addr)))),
        None => Err(unreachable(io::Error::other(format!("{} resolves to no address", target.host))).into()),
    }
}

/// `err`, in the same words, as a host that cannot be reached.
fn unreachable(err: io::Error) -> io::Error {
    if err.kind() == io::ErrorKind::HostUnreachable {
        return err;
    }
    io::Error::new(io::ErrorKind::HostUnreachable, err)
}

/// Why one connection attempt failed.
enum Attempt {
    /// The local address could not be bound: no other address of the
    /// target would do better.
    Bind(IpAddr, io::Error),
    Connect(io::Error),
}

/// One connection attempt to `addr`, bound to `bind` first when given.
/// IP_BIND_ADDRESS_NO_PORT leaves the choice of the local port to
/// connect(2), which can share it among different destinations; a kernel
/// without it (before 4.2) reserves one at bind instead, which also works.
fn open(addr: SocketAddr, bind: Option<IpAddr>) -> Result<TcpStream, Attempt> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(Attempt::Connect)?;
    if let Some(ip) = bind {
        let _ = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::IpBindAddressNoPort, &true);
        socket
            .bind(&SocketAddr::new(ip, 0).into())
            .map_err(|e| Attempt::Bind(ip, e))?;
    }
    socket
        .connect_timeout(&addr.into(), CONNECT_TIMEOUT)
        .map_err(Attempt::Connect)?;
    Ok(socket.into())
}

/// The error for `--bind` of one address family and a target that has
/// only addresses of the other.
fn family_mismatch(local: IpAddr, host: &str) -> String {
    let (ours, theirs) = if local.is_ipv4() {
        ("IPv4", "IPv6")
    } else {
        ("IPv6", "IPv4")
    };
    let target = if host.parse::<IpAddr>().is_ok() {
        format!("{host} is an {theirs} address")
    } else {
        format!("{host} resolves only to {theirs} addresses")
    };
    format!(
        "--bind {local} is an {ours} address, but {target}: a connection needs both ends in one family (bind an {theirs} address, or connect to an {ours} one)"
    )
}

/// Caps what `sock` sends at `rate` bytes per second: the kernel's TCP
/// pacing spaces the packets (SO_MAX_PACING_RATE; no qdisc needed since
/// Linux 4.13), so the data path stays as it is. Returns the rate the
/// kernel then reports, when it reports one.
pub fn pace(sock: &TcpStream, rate: u64) -> io::Result<Option<u64>> {
    crate::sys::set_max_pacing_rate(sock, rate)?;
    Ok(crate::sys::max_pacing_rate(sock).ok())
}

/// Closes `sock` with a reset (RST) instead of an orderly FIN: SO_LINGER
/// with a zero timeout, then close. For a raw stream the way it ends is
/// all the peer learns, so one that was cut short must not end the way a
/// complete one does. Any other handle on the same socket keeps it open.
pub fn reset(sock: TcpStream) {
    let _ = socket2::SockRef::from(&sock).set_linger(Some(Duration::ZERO));
    drop(sock);
}

/// Socket options for a transfer connection. TCP_NODELAY makes the small
/// end-of-transfer messages (trailer, verdict) go out at once; bulk data
/// is unaffected because it moves in large calls.
fn tune(s: &TcpStream) -> io::Result<()> {
    s.set_nodelay(true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_name_that_does_not_resolve_is_a_network_failure_in_the_same_words() {
        let said = io::Error::other("failed to lookup address information: Name or service not known");
        let err = anyhow::Error::new(unreachable(said)).context("resolving nosuch.invalid");
        assert_eq!(
            format!("{err:#}"),
            "resolving nosuch.invalid: failed to lookup address information: Name or service not known"
        );
        assert!(crate::error::connection_lost(&err));
        assert_eq!(crate::error::exit_code(&err), crate::error::Code::Network);
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("example.org:7227").unwrap(),
            HostPort {
                host: "example.org".into(),
                port: 7227
            }
        );
        assert_eq!(parse_host_port("[::1]:9").unwrap().host, "::1");
        assert_eq!(parse_host_port("127.0.0.1:0").unwrap().port, 0);
        assert!(parse_host_port("::1:9").unwrap_err().contains("brackets"));
        assert!(parse_host_port("host").is_err());
        assert!(parse_host_port("host:99999").is_err());
        assert!(parse_host_port(":80").is_err());
        assert!(parse_host_port("[nothex]:80").is_err());
        assert_eq!(parse_host_port("[::1]:9").unwrap().to_string(), "[::1]:9");
    }

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("0").unwrap(), ListenSpec { host: None, port: 0 });
        assert_eq!(parse_listen("127.0.0.1:5").unwrap().host.as_deref(), Some("127.0.0.1"));
        assert_eq!(parse_listen("[::1]:5").unwrap().host.as_deref(), Some("::1"));
        assert!(parse_listen("x").is_err());
    }

    #[test]
    fn bind_addresses() {
        assert_eq!(parse_bind("127.0.0.2").unwrap(), IpAddr::from([127, 0, 0, 2]));
        assert_eq!(parse_bind("::1").unwrap(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        assert_eq!(parse_bind("[::1]").unwrap(), IpAddr::V6(Ipv6Addr::LOCALHOST));
        for bad in ["", "eth0", "127.0.0.1:80", "[::1]:80", "localhost"] {
            assert!(parse_bind(bad).unwrap_err().contains("not an IP address"), "{bad}");
        }
    }

    #[test]
    fn a_family_mismatch_names_both_families() {
        let m = family_mismatch("::1".parse().unwrap(), "127.0.0.1");
        assert!(
            m.starts_with("--bind ::1 is an IPv6 address, but 127.0.0.1 is an IPv4 address"),
            "{m}"
        );
        let m = family_mismatch("10.0.0.1".parse().unwrap(), "example.org");
        assert!(m.contains("example.org resolves only to IPv6 addresses"), "{m}");
    }

    #[test]
    fn mapped_addresses_show_as_ipv4() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:80".parse().unwrap();
        assert_eq!(show_addr(a), "127.0.0.1:80");
    }
}
