//! A real OpenLDAP server for the directory tests: Debian's `slapd`, configured in a temporary
//! directory from `tests/fixtures/ldap`, listening on loopback ports for plain LDAP (with
//! StartTLS) and LDAP-S with a certificate authority the test creates.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

/// The directory's administrator, who loads and changes the test data.
const ROOT_DN: &str = "cn=admin,dc=example,dc=org";
const ROOT_PASSWORD: &str = "secret";

/// A running `slapd` with the fixture's users and groups.
pub(crate) struct Slapd {
    dir: tempfile::TempDir,
    ldap_port: u16,
    ldaps_port: u16,
    child: Option<Child>,
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/ldap")
        .join(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Slapd {
    /// Creates the certificates and the configuration, starts slapd and loads the fixture's
    /// users and groups.
    pub(crate) async fn start() -> Slapd {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("db")).unwrap();
        write_certificates(dir.path());
        let config = std::fs::read_to_string(fixture("slapd.conf"))
            .unwrap()
            .replace("@DIR@", dir.path().to_str().unwrap());
        std::fs::write(dir.path().join("slapd.conf"), config).unwrap();
        let mut slapd = Slapd {
            dir,
            ldap_port: free_port(),
            ldaps_port: free_port(),
            child: None,
        };
        slapd.resume().await;
        slapd
            .ldap_tool(
                "ldapadd",
                &std::fs::read_to_string(fixture("data.ldif")).unwrap(),
            )
            .await;
        slapd
    }

    /// `ldap://127.0.0.1:PORT`.
    pub(crate) fn ldap_url(&self) -> String {
        format!("ldap://127.0.0.1:{}", self.ldap_port)
    }

    /// `ldaps://127.0.0.1:PORT`.
    pub(crate) fn ldaps_url(&self) -> String {
        format!("ldaps://127.0.0.1:{}", self.ldaps_port)
    }

    /// The PEM file of the certificate authority that signed the server's certificate.
    pub(crate) fn ca_certificate(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Starts slapd (again) on the same ports and data, and waits until it accepts
    /// connections.
    pub(crate) async fn resume(&mut self) {
        let child = Command::new("/usr/sbin/slapd")
            .arg("-f")
            .arg(self.dir.path().join("slapd.conf"))
            .arg("-h")
            .arg(format!("{}/ {}/", self.ldap_url(), self.ldaps_url()))
            // Debug level 0 keeps slapd in the foreground, a child the test owns.
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("slapd must be installed (scripts/test.sh installs Debian's slapd)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.ldap_port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "slapd did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops slapd, as a directory that goes down does.
    pub(crate) async fn stop(&mut self) {
        let mut child = self.child.take().expect("slapd runs");
        child.kill().await.unwrap();
    }

    /// Freezes or thaws slapd: a frozen directory accepts connections and never answers.
    pub(crate) fn freeze(&self, frozen: bool) {
        let pid = self.child.as_ref().unwrap().id().unwrap() as i32;
        let signal = if frozen {
            nix::sys::signal::Signal::SIGSTOP
        } else {
            nix::sys::signal::Signal::SIGCONT
        };
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
        // A stop reaches a process's threads asynchronously: on a loaded machine slapd could
        // still answer a request sent right after the signal. Wait until the kernel says it is.
        let stopped = |status: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("State:"))
                .is_some_and(|state| state.trim_start().starts_with('T'))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while frozen
            && !std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| stopped(&s))
        {
            assert!(std::time::Instant::now() < deadline, "slapd did not stop");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    /// Changes the directory as its administrator, with LDIF change records.
    pub(crate) async fn modify(&self, ldif: &str) {
        self.ldap_tool("ldapmodify", ldif).await;
    }

    async fn ldap_tool(&self, tool: &str, ldif: &str) {
        let mut child = Command::new(tool)
            .args([
                "-x",
                "-H",
                &self.ldap_url(),
                "-D",
                ROOT_DN,
                "-w",
                ROOT_PASSWORD,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(ldif.as_bytes())
            .await
            .unwrap();
        let output = child.wait_with_output().await.unwrap();
        assert!(
            output.status.success(),
            "{tool} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A certificate authority, and a server certificate it signed for 127.0.0.1 and localhost.
fn write_certificates(dir: &Path) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "o16n test directory CA");
    let ca_certificate = ca.self_signed(&ca_key).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let mut server =
        CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "127.0.0.1");
    let server_certificate = server
        .signed_by(&server_key, &Issuer::new(ca, &ca_key))
        .unwrap();
    std::fs::write(dir.join("ca.pem"), ca_certificate.pem()).unwrap();
    std::fs::write(dir.join("cert.pem"), server_certificate.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), server_key.serialize_pem()).unwrap();
}
