//! The system-call filter of every sandboxed worker: the kernel interfaces no R or Python code
//! needs and that widen what a hostile tenant can reach.
//!
//! Refused with `EPERM`: new namespaces (`unshare`, `setns`, and `clone` with a namespace
//! flag: a user namespace would give its creator capabilities over new mounts and network
//! stacks), mounting, the kernel keyring (`keyctl`, `add_key`, `request_key`, shared per user
//! id), `bpf`, `ptrace` and the cross-process memory calls, `perf_event_open`, `userfaultfd`,
//! `io_uring` (whose operations bypass this filter), kernel modules, `kexec`, handle-based
//! opens, swap, reboot, the clock, accounting and the kernel log. `clone3` answers `ENOSYS`,
//! as container runtimes do, because its flags cannot be inspected (they are in memory): the C
//! libraries then fall back to `clone`, whose flags can.
//!
//! The filters are compiled here once, with `seccompiler`, into classic BPF, and handed to the
//! worker scripts as hex text (`O16N_SYSCALL_FILTERS`, one program per comma-separated item);
//! each worker installs them itself, after it has entered its sandbox and set `no_new_privs`,
//! before it runs any user code (`workers/python/o16n_worker.py`, `workers/r/o16n_fork.c`).

use std::collections::BTreeMap;
use std::sync::LazyLock;

use nix::libc;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// The environment variable that carries the filters to a worker.
pub(crate) const FILTERS_VARIABLE: &str = "O16N_SYSCALL_FILTERS";

/// System calls refused outright.
const REFUSED: &[libc::c_long] = &[
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_bpf,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_acct,
    libc::SYS_syslog,
    libc::SYS_quotactl,
];

/// The `clone` flags that make new namespaces.
const NAMESPACE_FLAGS: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// The filters as the workers take them, compiled once.
pub(crate) fn worker_filters() -> &'static str {
    static FILTERS: LazyLock<String> = LazyLock::new(|| {
        [refusals(), clone3_unavailable()]
            .iter()
            .map(hex)
            .collect::<Vec<_>>()
            .join(",")
    });
    &FILTERS
}

fn target() -> TargetArch {
    if cfg!(target_arch = "aarch64") {
        TargetArch::aarch64
    } else {
        TargetArch::x86_64
    }
}

/// Everything in [`REFUSED`], and `clone` with a namespace flag: `EPERM`.
fn refusals() -> BpfProgram {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|&call| (call, Vec::new())).collect();
    let clone_rules = NAMESPACE_FLAGS
        .iter()
        .map(|&flag| {
            let condition = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Qword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )
            .expect("a condition on the first argument is valid");
            SeccompRule::new(vec![condition]).expect("a rule with a condition is valid")
        })
        .collect();
    rules.insert(libc::SYS_clone, clone_rules);
    compile(rules, libc::EPERM)
}

/// `clone3`: `ENOSYS`, so that callers fall back to `clone`.
fn clone3_unavailable() -> BpfProgram {
    compile(
        BTreeMap::from([(libc::SYS_clone3, Vec::new())]),
        libc::ENOSYS,
    )
}

fn compile(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> BpfProgram {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        target(),
    )
    .expect("the worker filter is well formed");
    BpfProgram::try_from(filter).expect("the worker filter compiles")
}

/// A program as the kernel reads it (`struct sock_filter`, little-endian), in hex.
fn hex(program: &BpfProgram) -> String {
    let mut bytes = Vec::with_capacity(program.len() * 8);
    for instruction in program {
        bytes.extend(instruction.code.to_le_bytes());
        bytes.push(instruction.jt);
        bytes.push(instruction.jf);
        bytes.extend(instruction.k.to_le_bytes());
    }
    crate::content::hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_are_two_whole_programs_of_sock_filter_instructions() {
        let filters: Vec<&str> = worker_filters().split(',').collect();
        assert_eq!(filters.len(), 2);
        for program in filters {
            // 8 bytes (16 hex digits) per instruction, and no more than the kernel loads.
            assert_eq!(program.len() % 16, 0);
            assert!((1..=4096).contains(&(program.len() / 16)));
            assert!(program.bytes().all(|digit| digit.is_ascii_hexdigit()));
        }
    }
}
