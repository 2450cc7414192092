//! Outbound-only network access for sandboxed workers and builds whose network is on.
//!
//! Each such worker and each build joins a network namespace of its own, prepared by the server
//! before anyone asks for it (a forked worker's keeper joins it through a descriptor sent with
//! its fork request; a spawned worker's bubblewrap and a build start in it through `nsenter`).
//! In the namespace:
//! * [slirp4netns](https://github.com/rootless-containers/slirp4netns) gives outbound IPv4: the
//!   namespace's `tap0` (10.0.2.100/24) leads to a user-mode TCP/IP stack that carries the
//!   worker's TCP and UDP flows over sockets of its own on the host. Nothing is forwarded
//!   inward (a port the worker binds is reachable from nowhere else), its gateway does not lead
//!   to the host's loopback, its built-in resolver is off, and there is no IPv6. It runs as root
//!   (only root may join a namespace the host owns) in its own sandbox: a mount namespace of
//!   its own, no capability but binding low ports, a system-call filter. (pasta, from passt,
//!   does the same faster, but holds 17.7 MiB of memory per namespace against 1.4 MiB.)
//! * An nftables table rejects whatever leaves the namespace for the loopback, private,
//!   shared, link-local (cloud metadata), multicast and reserved ranges and for the host's own
//!   addresses, except the resolvers of the host's `resolv.conf` (port 53) and the operator's
//!   allowed destinations (`runtime.sandbox.network_allow`). The worker cannot change the table:
//!   it has no capabilities, and its system-call filter refuses new namespaces.
//! * An allowed destination on the host's loopback (which the namespace's own loopback hides)
//!   is reached through a listener the server binds in the namespace at the same address and
//!   port; it relays each TCP connection to the host's.
//!
//! Preparing a namespace takes tens of milliseconds of processes (slirp4netns, nft), so a few
//! are kept prepared by a background task and a worker start costs one `setns`. When a
//! worker ends and its user id has been swept (nothing of it runs any more), its namespace
//! goes back to the stock for another worker ([`NetworkNamespace::recycle`]); a namespace
//! that is not reused is discarded: slirp4netns is killed and the relays stop.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::{CancellationToken, DropGuard};
use tokio_util::task::TaskTracker;

use crate::RuntimeError;

/// How many namespaces are kept prepared.
const STOCK: usize = 2;
/// How many may wait at most, those that came back from ended workers included.
const STOCK_ROOM: usize = 8;
/// How long the stock waits after a namespace was taken before it prepares another.
const REFILL_DELAY: Duration = Duration::from_millis(500);
/// How long slirp4netns may take to configure a namespace.
const START_LIMIT: Duration = Duration::from_secs(10);
/// The most relayed connections one namespace may have open at once; more are refused.
const MAX_RELAYED_CONNECTIONS: usize = 64;
/// How long a relay waits before accepting again after an accept failed.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);
/// How long the stock waits before trying again after a namespace could not be prepared.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

/// The IPv4 ranges no worker reaches unless an allowed destination names them: "this"
/// network, private networks, shared address space (carrier NAT), loopback, link-local (where
/// clouds serve instance metadata), IETF protocol assignments, benchmarking, multicast and
/// reserved space.
const DENIED_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/4",
    "240.0.0.0/4",
];

/// A destination the operator lets workers and builds reach although the policy denies its
/// range (a database on the private network, say): an IPv4 network and one port, TCP and UDP.
/// Written `ADDRESS[/PREFIX]:PORT`. A destination on the host's loopback must be one address;
/// it is reached over TCP through a relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct AllowedDestination {
    network: Ipv4Net,
    port: u16,
}

impl AllowedDestination {
    /// One address and port.
    pub(crate) fn single(address: Ipv4Addr, port: u16) -> AllowedDestination {
        AllowedDestination {
            network: Ipv4Net::from(address),
            port,
        }
    }

    /// The address and port of the host's loopback that a relay serves, for a loopback
    /// destination.
    fn relayed(&self) -> Option<SocketAddrV4> {
        self.network
            .addr()
            .is_loopback()
            .then(|| SocketAddrV4::new(self.network.addr(), self.port))
    }

    /// The destination as an nftables match.
    fn rule(&self) -> String {
        format!(
            "ip daddr {} meta l4proto {{ tcp, udp }} th dport {} accept",
            self.network, self.port
        )
    }
}

impl FromStr for AllowedDestination {
    type Err = String;

    fn from_str(text: &str) -> Result<AllowedDestination, String> {
        let invalid = |why: &str| {
            format!("{text:?} is not an allowed destination (ADDRESS[/PREFIX]:PORT, IPv4): {why}")
        };
        let (network, port) = text
            .rsplit_once(':')
            .ok_or_else(|| invalid("the port is missing"))?;
        let network = match network.parse::<Ipv4Net>() {
            Ok(network) => network.trunc(),
            Err(_) => Ipv4Net::from(
                network
                    .parse::<Ipv4Addr>()
                    .map_err(|_| invalid("the address is not IPv4"))?,
            ),
        };
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?;
        if network.addr().is_loopback() && network.prefix_len() != 32 {
            return Err(invalid(
                "a destination on the loopback must be a single address",
            ));
        }
        Ok(AllowedDestination { network, port })
    }
}

impl TryFrom<String> for AllowedDestination {
    type Error = String;

    fn try_from(text: String) -> Result<AllowedDestination, String> {
        text.parse()
    }
}

impl fmt::Display for AllowedDestination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.network.prefix_len() == 32 {
            write!(f, "{}:{}", self.network.addr(), self.port)
        } else {
            write!(f, "{}:{}", self.network, self.port)
        }
    }
}

/// The programs that build a namespace's network.
#[derive(Debug)]
struct Programs {
    slirp4netns: PathBuf,
    nft: PathBuf,
    nsenter: PathBuf,
}

/// What every namespace of this node allows.
#[derive(Debug)]
struct Shared {
    programs: Programs,
    allowed: Vec<AllowedDestination>,
    /// The host's resolvers, reachable on port 53 whatever their range.
    resolvers: Vec<Ipv4Addr>,
    /// Where prepared namespaces wait.
    stock: tokio::sync::Mutex<mpsc::Receiver<NetworkNamespace>>,
    /// Where namespaces of the node's policy come back once their worker is gone.
    returns: mpsc::Sender<NetworkNamespace>,
    /// Told whenever a worker takes a namespace, so that the stock is refilled.
    taken: Arc<Notify>,
    tasks: TaskTracker,
    stop: CancellationToken,
}

/// Prepares network namespaces with outbound-only access, and keeps a few prepared. Cheap to
/// clone.
#[derive(Debug, Clone)]
pub(crate) struct Egress {
    shared: Arc<Shared>,
}

impl Egress {
    /// Finds slirp4netns, nft and nsenter, prepares a first namespace to see that they work here,
    /// and starts keeping a stock; `Err` says what is missing or failed.
    pub(crate) async fn start(
        allowed: Vec<AllowedDestination>,
        tasks: &TaskTracker,
        stop: CancellationToken,
    ) -> Result<Egress, String> {
        let find = |name: &str, package: &str| {
            crate::sandbox::find_program(name)
                .ok_or_else(|| format!("{name} ({package}) is not installed"))
        };
        let programs = Programs {
            slirp4netns: find("slirp4netns", "slirp4netns")?,
            nft: find("nft", "nftables")?,
            nsenter: find("nsenter", "util-linux")?,
        };
        let resolvers = std::fs::read_to_string("/etc/resolv.conf")
            .map(|text| resolvers_of(&text))
            .unwrap_or_default();
        let (sender, receiver) = mpsc::channel(STOCK_ROOM);
        let taken = Arc::new(Notify::new());
        let egress = Egress {
            shared: Arc::new(Shared {
                programs,
                allowed,
                resolvers,
                stock: tokio::sync::Mutex::new(receiver),
                returns: sender.clone(),
                taken: taken.clone(),
                tasks: tasks.clone(),
                stop,
            }),
        };
        let first = egress
            .prepare_for_workers()
            .await
            .map_err(|err| err.to_string())?;
        sender
            .send(first)
            .await
            .expect("the stock is open while the egress lives");
        tasks.spawn(keep_stock(
            Arc::downgrade(&egress.shared),
            sender,
            taken,
            egress.shared.stop.clone(),
        ));
        Ok(egress)
    }

    /// The `nsenter` that starts a program in a namespace.
    pub(crate) fn nsenter(&self) -> &Path {
        &self.shared.programs.nsenter
    }

    /// A prepared namespace for a worker: from the stock when one is ready, else made now.
    pub(crate) async fn take(&self) -> Result<NetworkNamespace, RuntimeError> {
        let stocked = self.shared.stock.lock().await.try_recv();
        self.shared.taken.notify_one();
        match stocked {
            Ok(prepared) => Ok(prepared),
            Err(_) => self.prepare_for_workers().await,
        }
    }

    /// A namespace of the node's policy, which returns to the stock when recycled.
    async fn prepare_for_workers(&self) -> Result<NetworkNamespace, RuntimeError> {
        let mut prepared = self.prepare(&[]).await?;
        prepared.returns = Some(self.shared.returns.clone());
        Ok(prepared)
    }

    /// A namespace that also reaches `also_allowed` (a build's package sources), made now.
    pub(crate) async fn prepare(
        &self,
        also_allowed: &[AllowedDestination],
    ) -> Result<NetworkNamespace, RuntimeError> {
        let unavailable = |what: String| {
            RuntimeError::RuntimeUnavailable(format!(
                "a worker's network namespace could not be prepared: {what}"
            ))
        };
        let allowed: Vec<AllowedDestination> = self
            .shared
            .allowed
            .iter()
            .chain(also_allowed)
            .copied()
            .collect();
        let handle = new_namespace()
            .await
            .map_err(|err| unavailable(format!("cannot create it: {err}")))?;
        let path = fd_path(&handle);
        let rules = rules(&allowed, &self.shared.resolvers, &host_addresses());
        apply_rules(&self.shared.programs, &path, &rules)
            .await
            .map_err(unavailable)?;
        let slirp = start_slirp(&self.shared.programs.slirp4netns, &path, &self.shared.tasks)
            .await
            .map_err(unavailable)?;
        let relays = self.shared.stop.child_token();
        let connections = Arc::new(Semaphore::new(MAX_RELAYED_CONNECTIONS));
        for destination in allowed.iter().filter_map(AllowedDestination::relayed) {
            let listener = bind_in(&handle, destination)
                .await
                .map_err(|err| unavailable(format!("cannot relay {destination}: {err}")))?;
            self.shared.tasks.spawn(relay(
                listener,
                destination,
                connections.clone(),
                self.shared.tasks.clone(),
                relays.clone(),
            ));
        }
        Ok(NetworkNamespace {
            handle,
            _slirp: slirp,
            _relays: relays.drop_guard(),
            returns: None,
        })
    }
}

/// A network namespace with outbound-only access, for one worker or build. Dropping it stops
/// its slirp4netns and relays; the namespace itself goes when the last process in it ends.
pub(crate) struct NetworkNamespace {
    handle: OwnedFd,
    _slirp: Child,
    _relays: DropGuard,
    /// The stock it returns to when recycled: set for namespaces of the node's policy (a
    /// build's, which also reaches its sources, is never reused).
    returns: Option<mpsc::Sender<NetworkNamespace>>,
}

impl NetworkNamespace {
    /// A descriptor of the namespace, to send to a template.
    pub(crate) fn descriptor(&self) -> std::io::Result<OwnedFd> {
        self.handle.try_clone()
    }

    /// Gives the namespace to another worker once nothing of its worker runs (the caller has
    /// swept its user id): the worker had no capability to change the namespace's interfaces,
    /// routes or rules, and its sockets closed with its processes, so nothing of it stays.
    /// Preparing a namespace costs tens of milliseconds of processes; reuse makes a busy node's
    /// churn of workers cost none. Dropped instead when the stock is full or gone.
    pub(crate) fn recycle(self) {
        if let Some(returns) = self.returns.clone() {
            let _ = returns.try_send(self);
        }
    }

    /// A path under which this process's descriptor of the namespace opens it (for
    /// `nsenter --net=`), valid while the namespace is held.
    pub(crate) fn path(&self) -> PathBuf {
        fd_path(&self.handle)
    }
}

impl fmt::Debug for NetworkNamespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkNamespace")
            .field("handle", &self.handle.as_raw_fd())
            .finish()
    }
}

/// Keeps [`STOCK`] namespaces prepared until the egress is dropped or the node stops. After a
/// worker takes one, it waits [`REFILL_DELAY`] before preparing: a node whose workers come and
/// go (sessions opened and closed) gets namespaces back from ended workers meanwhile, and
/// preparing one would only compete with the requests for the processor.
async fn keep_stock(
    shared: std::sync::Weak<Shared>,
    sender: mpsc::Sender<NetworkNamespace>,
    taken: Arc<Notify>,
    stop: CancellationToken,
) {
    loop {
        while stocked(&sender) < STOCK {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let egress = Egress { shared };
            let prepared = tokio::select! {
                prepared = egress.prepare_for_workers() => prepared,
                () = stop.cancelled() => return,
            };
            drop(egress);
            match prepared {
                // Beyond the stock's room (namespaces came back meanwhile) it is dropped.
                Ok(prepared) => drop(sender.try_send(prepared)),
                Err(err) => {
                    tracing::error!(error = %err, "a network namespace could not be prepared ahead");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_AFTER_FAILURE) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
        }
        tokio::select! {
            () = taken.notified() => {}
            () = stop.cancelled() => return,
        }
        tokio::select! {
            () = tokio::time::sleep(REFILL_DELAY) => {}
            () = stop.cancelled() => return,
        }
    }
}

/// How many namespaces wait in the stock.
fn stocked(sender: &mpsc::Sender<NetworkNamespace>) -> usize {
    sender.max_capacity() - sender.capacity()
}

/// Where this process's descriptor `fd` can be opened by another process of root.
fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{}/fd/{}",
        std::process::id(),
        fd.as_raw_fd()
    ))
}

/// A new network namespace, created on a thread of its own (a thread's namespace is its own to
/// change, and this one ends right after).
async fn new_namespace() -> std::io::Result<OwnedFd> {
    in_thread(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        Ok(std::fs::File::open("/proc/thread-self/ns/net")?.into())
    })
    .await
}

/// Binds a TCP listener at `address` inside the namespace `handle`.
async fn bind_in(handle: &OwnedFd, address: SocketAddrV4) -> std::io::Result<TcpListener> {
    let handle = handle.try_clone()?;
    let listener = in_thread(move || {
        nix::sched::setns(handle.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)?;
        std::net::TcpListener::bind(address)
    })
    .await?;
    listener.set_nonblocking(true)?;
    TcpListener::from_std(listener)
}

/// Runs `work` on a new thread that ends with it, so that whatever it does to the thread's
/// namespaces dies with the thread.
async fn in_thread<T: Send + 'static>(
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("o16n-netns".to_owned())
        .spawn(move || {
            let _ = sender.send(work());
        })?;
    receiver
        .await
        .map_err(|_| std::io::Error::other("the namespace thread ended without an answer"))?
}

/// Accepts connections in a namespace and relays each to `destination` on the host, until
/// `stop`.
async fn relay(
    listener: TcpListener,
    destination: SocketAddrV4,
    connections: Arc<Semaphore>,
    tasks: TaskTracker,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        let Ok((mut inside, _)) = accepted else {
            // Out of descriptors, say: the listener stays readable, so a pause keeps this
            // loop from spinning until some are free.
            tokio::select! {
                () = tokio::time::sleep(ACCEPT_RETRY) => continue,
                () = stop.cancelled() => return,
            }
        };
        // Beyond the limit a connection is closed at once: a worker cannot spend the
        // server's descriptors through its relays.
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            continue;
        };
        let stop = stop.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let Ok(mut outside) = TcpStream::connect(destination).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut inside, &mut outside) => {}
                () = stop.cancelled() => {}
            }
        });
    }
}

/// Applies `rules` in the namespace at `path`.
async fn apply_rules(programs: &Programs, path: &Path, rules: &str) -> Result<(), String> {
    let mut command = Command::new(&programs.nsenter);
    command
        .arg(format!("--net={}", path.display()))
        .arg("--")
        .arg(&programs.nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start nft: {err}"))?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin
        .write_all(rules.as_bytes())
        .await
        .map_err(|err| format!("cannot give nft its rules: {err}"))?;
    drop(stdin);
    let output = child
        .wait_with_output()
        .await
        .map_err(|err| format!("nft did not finish: {err}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft refused the rules ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Starts slirp4netns on the namespace at `path` and waits until it has configured it (it
/// writes to its ready descriptor once it has). A shell opens the namespace and the ready pipe
/// as descriptors of slirp4netns's own (3 and 4) and becomes slirp4netns.
async fn start_slirp(
    slirp4netns: &Path,
    path: &Path,
    tasks: &TaskTracker,
) -> Result<Child, String> {
    let (ready_read, ready_write) = std::io::pipe().map_err(|err| err.to_string())?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(r#"exec "$0" "$@" 3<"$O16N_NETNS" 4>"$O16N_READY""#)
        .arg(slirp4netns)
        .args([
            "--configure",
            "--mtu=65520",
            // The gateway is not the host's loopback, and the built-in resolver (which would
            // be) is off: workers use the resolvers of the host's resolv.conf.
            "--disable-host-loopback",
            "--disable-dns",
            // Its own mount namespace and no capability but binding low ports, and a
            // system-call filter: it handles the packets of untrusted code.
            "--enable-sandbox",
            "--enable-seccomp",
            "--ready-fd=4",
            "--netns-type=path",
            "/proc/self/fd/3",
            "tap0",
        ])
        .env_clear()
        .env("O16N_NETNS", path)
        .env("O16N_READY", fd_path(&ready_write))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|err| format!("cannot start slirp4netns: {err}"))?;
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let mut ready = tokio::net::unix::pipe::Receiver::from_owned_fd(ready_read.into())
        .map_err(|err| err.to_string())?;
    let waited = tokio::time::timeout(START_LIMIT, async {
        let mut said = [0u8; 1];
        tokio::select! {
            read = ready.read(&mut said) => match read {
                Ok(1) => Ok(()),
                _ => Err("slirp4netns closed its ready descriptor".to_owned()),
            },
            status = child.wait() => {
                let mut complaint = Vec::new();
                let _ = (&mut stderr).take(4096).read_to_end(&mut complaint).await;
                Err(match status {
                    Ok(status) => format!(
                        "slirp4netns ended ({status}) before the namespace was ready: {}",
                        String::from_utf8_lossy(&complaint).trim()
                    ),
                    Err(err) => format!("slirp4netns could not be waited for: {err}"),
                })
            }
        }
    })
    .await;
    drop(ready_write);
    match waited {
        Ok(Ok(())) => {
            // What it says later goes to the log (its output is drained, never left to fill a
            // pipe and block it).
            tasks.spawn(log_slirp(stderr));
            Ok(child)
        }
        Ok(Err(why)) => Err(why),
        Err(_) => Err(format!(
            "slirp4netns did not configure the namespace within {} s",
            START_LIMIT.as_secs()
        )),
    }
}

/// Logs what a running slirp4netns writes to its stderr, until it ends.
async fn log_slirp(mut stderr: tokio::process::ChildStderr) {
    let mut chunk = vec![0u8; 4096];
    while let Ok(count) = stderr.read(&mut chunk).await {
        if count == 0 {
            return;
        }
        let text = String::from_utf8_lossy(&chunk[..count]);
        // It reports at every start how it got its tap device and that its system-call filter
        // is experimental; anything else is worth a look.
        for line in text.lines().map(str::trim).filter(|line| {
            !line.is_empty()
                && !line.contains("tapfd=")
                && !line.contains("seccomp is experimental")
        }) {
            tracing::warn!(message = line, "slirp4netns, a worker's network");
        }
    }
}

/// The IPv4 name servers of a `resolv.conf`.
fn resolvers_of(text: &str) -> Vec<Ipv4Addr> {
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse().ok())
        .collect()
}

/// The host's own IPv4 addresses (a server listening on all of them is on the host).
fn host_addresses() -> Vec<Ipv4Addr> {
    let Ok(addresses) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    let mut found: Vec<Ipv4Addr> = addresses
        .filter_map(|interface| interface.address)
        .filter_map(|address| address.as_sockaddr_in().map(|inet| inet.ip()))
        .collect();
    found.sort();
    found.dedup();
    found
}

/// The nftables table of a namespace: the namespace's own loopback, the resolvers and the
/// allowed destinations pass; the denied ranges and the host's addresses are rejected (at
/// once, so that a connection fails fast); IPv6 leaves nothing but loopback.
fn rules(allowed: &[AllowedDestination], resolvers: &[Ipv4Addr], host: &[Ipv4Addr]) -> String {
    let ranges: Vec<Ipv4Net> = DENIED_RANGES
        .iter()
        .map(|range| range.parse().expect("the denied ranges are networks"))
        .collect();
    // A set may not hold an address and a range that contains it.
    let mut denied: Vec<String> = ranges.iter().map(Ipv4Net::to_string).collect();
    denied.extend(
        host.iter()
            .filter(|address| !ranges.iter().any(|range| range.contains(*address)))
            .map(Ipv4Addr::to_string),
    );
    let mut text = String::from(
        "table inet o16n_egress {\n  chain output {\n    type filter hook output priority filter; policy accept;\n    oif \"lo\" accept\n",
    );
    for resolver in resolvers {
        text.push_str(&format!(
            "    ip daddr {resolver} meta l4proto {{ tcp, udp }} th dport 53 accept\n"
        ));
    }
    for destination in allowed {
        text.push_str(&format!("    {}\n", destination.rule()));
    }
    text.push_str(&format!(
        "    ip daddr {{ {} }} reject\n    meta nfproto ipv6 reject\n  }}\n}}\n",
        denied.join(", ")
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_are_an_ipv4_network_or_address_and_a_port() {
        let database: AllowedDestination = "10.1.2.3:5432".parse().unwrap();
        assert_eq!(database.to_string(), "10.1.2.3:5432");
        assert_eq!(database.relayed(), None);
        let subnet: AllowedDestination = "10.1.2.77/24:6379".parse().unwrap();
        assert_eq!(subnet.to_string(), "10.1.2.0/24:6379");
        let local: AllowedDestination = "127.0.0.2:5432".parse().unwrap();
        assert_eq!(
            local.relayed(),
            Some(SocketAddrV4::new(Ipv4Addr::new(127, 0, 0, 2), 5432))
        );
        for wrong in [
            "10.1.2.3",
            "10.1.2.3:0",
            "10.1.2.3:70000",
            "db.example.com:5432",
            "[::1]:5432",
            "127.0.0.0/8:5432",
        ] {
            assert!(wrong.parse::<AllowedDestination>().is_err(), "{wrong}");
        }
    }

    #[test]
    fn the_rules_let_resolvers_and_allowed_destinations_through_before_the_denied_ranges() {
        let allowed = ["10.1.2.3:5432".parse().unwrap()];
        let text = rules(
            &allowed,
            &[Ipv4Addr::new(10, 255, 255, 53)],
            &[
                Ipv4Addr::new(127, 0, 0, 1),
                Ipv4Addr::new(192, 0, 2, 2),
                Ipv4Addr::new(10, 0, 0, 4),
            ],
        );
        let position = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        let reject = position("reject");
        assert!(position("oif \"lo\" accept") < reject);
        assert!(
            position("ip daddr 10.255.255.53 meta l4proto { tcp, udp } th dport 53 accept")
                < reject
        );
        assert!(
            position("ip daddr 10.1.2.3/32 meta l4proto { tcp, udp } th dport 5432 accept")
                < reject
        );
        assert!(text.contains("169.254.0.0/16"), "{text}");
        // The host's own public address is denied; those inside a denied range are not repeated.
        assert!(text.contains(", 192.0.2.2 }"), "{text}");
        assert!(!text.contains("10.0.0.4"), "{text}");
        assert!(!text.contains("127.0.0.1"), "{text}");
        assert!(text.contains("meta nfproto ipv6 reject"), "{text}");
    }

    #[test]
    fn resolvers_are_read_from_resolv_conf() {
        let text = "# comment\nnameserver 10.255.255.53\nnameserver ::1\nsearch example\n  nameserver 1.1.1.1\n";
        assert_eq!(
            resolvers_of(text),
            vec![Ipv4Addr::new(10, 255, 255, 53), Ipv4Addr::new(1, 1, 1, 1)]
        );
    }
}
