//! Ends every process of a worker's host user id before the id can go to another worker.
//!
//! Killing a worker tears down its PID namespace, but the namespace is not the only way a
//! process can outlive it (a keeper that lingers, a build's daemon, a future change of the
//! sandbox), and a process left behind would share its id, and so its files and its signals,
//! with the next worker that gets the id. So a host user id is freed only after a sweep: every
//! process running as the id is sent `SIGKILL` by a process of that very id (`kill -KILL -1`
//! run as it, which the kernel applies to each such process at once, so that a process that
//! forks cannot escape between a listing and the signals), repeated until `/proc` shows none.
//! An id whose processes cannot be ended stays locked until the server exits.
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a sweep keeps trying before it gives the id up for the server's lifetime.
const PATIENCE: Duration = Duration::from_secs(10);
/// The pause between two rounds of a sweep (signals are delivered asynchronously).
const ROUND_PAUSE: Duration = Duration::from_millis(20);

/// Kills whatever runs as a host user id, through the `kill` program run as that id.
#[derive(Debug, Clone)]
pub(crate) struct Reaper {
    kill: PathBuf,
}

impl Reaper {
    pub(crate) fn new(kill: PathBuf) -> Reaper {
        Reaper { kill }
    }

    /// Ends every process of `uid`; `false` when some still ran after [`PATIENCE`].
    /// Blocks: call it off the async threads.
    pub(crate) fn end_all(&self, uid: u32) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if count_processes_of(Path::new("/proc"), uid) == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.signal_all(uid);
            std::thread::sleep(ROUND_PAUSE);
        }
    }

    fn signal_all(&self, uid: u32) {
        // `kill -1` signals every process the caller may signal except itself: as `uid`, with
        // neither capabilities nor other ids, that is exactly the processes of `uid`.
        let sent = Command::new(&self.kill)
            .args(["-KILL", "--", "-1"])
            .uid(uid)
            .gid(uid)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Err(err) = sent {
            tracing::warn!(uid, error = %err, "cannot run kill to end a user id's processes");
        }
    }
}

/// How many processes run with `uid` as their real, effective, saved or file-system user id.
fn count_processes_of(proc_root: &Path, uid: u32) -> usize {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|byte| byte.is_ascii_digit()))
        })
        .filter(|entry| {
            // A process that ended between the listing and the read has no status: not counted.
            std::fs::read_to_string(entry.path().join("status"))
                .is_ok_and(|status| status_has_uid(&status, uid))
        })
        .count()
}

/// Whether a `/proc/PID/status` text names `uid` among its four user ids.
fn status_has_uid(status: &str, uid: u32) -> bool {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .is_some_and(|ids| {
            ids.split_whitespace()
                .any(|id| id.parse::<u32>() == Ok(uid))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_process_of_a_uid_ends_even_one_that_left_its_session_and_ignores_signals() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: only root can run processes as another user id");
            return;
        }
        let uid = 1_000_000_321;
        // A process that leaves its parent's session, ignores every signal it can and forks.
        let escaper = Command::new("/bin/sh")
            .args([
                "-c",
                "trap '' HUP INT TERM QUIT USR1 USR2; setsid sleep 1000 & setsid sleep 1000 & wait",
            ])
            .uid(uid)
            .gid(uid)
            .spawn()
            .unwrap();
        // Reaped as soon as it ends, as a worker's parent reaps it: a zombie still counts.
        let shell_ended = std::thread::spawn(move || {
            let mut escaper = escaper;
            escaper.wait().unwrap()
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while count_processes_of(Path::new("/proc"), uid) < 3 {
            assert!(Instant::now() < deadline, "the processes never started");
            std::thread::sleep(Duration::from_millis(5));
        }

        let kill = ["/usr/bin/kill", "/bin/kill"]
            .into_iter()
            .find(|path| Path::new(path).is_file())
            .expect("procps' kill is installed");
        assert!(Reaper::new(kill.into()).end_all(uid));
        assert_eq!(count_processes_of(Path::new("/proc"), uid), 0);
        assert!(!shell_ended.join().unwrap().success());
    }

    #[test]
    fn a_status_names_a_uid_in_any_of_its_four_places() {
        let status = "Name:\tsleep\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t200001\t0\t0\nGid:\t0\t0\t0\t0\n";
        assert!(status_has_uid(status, 200_001));
        assert!(status_has_uid(status, 0));
        assert!(!status_has_uid(status, 20_000));
        assert!(!status_has_uid("Name:\tx\nGid:\t5\t5\t5\t5\n", 5));
    }

    #[test]
    fn processes_are_counted_by_uid_from_a_proc_tree() {
        let root = tempfile::tempdir().unwrap();
        for (pid, uid) in [("12", 500), ("13", 500), ("40", 7)] {
            std::fs::create_dir(root.path().join(pid)).unwrap();
            std::fs::write(
                root.path().join(pid).join("status"),
                format!("Name:\tx\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"),
            )
            .unwrap();
        }
        // Not a process: ignored even though it looks like one.
        std::fs::create_dir(root.path().join("self")).unwrap();
        std::fs::write(root.path().join("self").join("status"), "Uid:\t500\n").unwrap();
        assert_eq!(count_processes_of(root.path(), 500), 2);
        assert_eq!(count_processes_of(root.path(), 7), 1);
        assert_eq!(count_processes_of(root.path(), 8), 0);
    }
}
