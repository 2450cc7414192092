/*
 * o16n R worker template: the system calls R cannot make, for `o16n_worker.R --template`.
 *
 * The server starts the R worker script with `--template` in a template sandbox (see
 * `crates/runtime/src/template.rs`); the script loads this library and serves fork requests on
 * its control socket (a Unix datagram socket) for as long as the server lives. R parses each
 * request (JSON); this library receives it with its descriptors (the worker's stdin, stdout,
 * stderr and lifeline, and when the network is on the network namespace the server prepared),
 * forks, and reports to the server. It does for R what
 * `workers/python/o16n_template.py` does for Python, step for step; read that file's
 * description first. The keeper leads the worker's process group and mirrors its exit; the
 * worker is PID 1 of new mount, PID, IPC and UTS namespaces, in the prepared network namespace
 * (or a new one with loopback only when the network is off),
 * builds its sandbox and only then returns to R, with the protocol on descriptors 3 and 4 and
 * its console on 1 and 2, as a spawned R worker has them. A worker whose sandbox cannot be
 * built ends with exit code 70 and says why on its stderr: it never runs code half-isolated.
 *
 * Called through R's `.C` interface: every argument is a pointer.
 */

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* The worker's stdin, stdout, stderr and lifeline; a request whose network is on brings its
 * network namespace too. */
#define DESCRIPTORS_PER_REQUEST 4
#define MAX_DESCRIPTORS_PER_REQUEST 5
#define SANDBOX_FAILURE_EXIT 70

/* Written by the SIGCHLD handler, so that waiting for requests also wakes for ended keepers. */
static int child_ended[2] = {-1, -1};

static void on_child_ended(int signal_number) {
    (void) signal_number;
    int saved = errno;
    if (write(child_ended[1], "x", 1) < 0) {
        /* The pipe is full: a wake-up is already pending. */
    }
    errno = saved;
}

static void send_message(int control, const char *message) {
    while (send(control, message, strlen(message), MSG_NOSIGNAL) < 0 && errno == EINTR) {
    }
}

/* Reaps ended keepers and reports each to the server. */
static void report_exits(int control) {
    char drained[64];
    while (read(child_ended[0], drained, sizeof drained) > 0) {
    }
    for (;;) {
        int status;
        pid_t pid = waitpid(-1, &status, WNOHANG);
        if (pid <= 0) {
            return;
        }
        char message[128];
        if (WIFSIGNALED(status)) {
            snprintf(message, sizeof message, "{\"type\":\"exited\",\"pid\":%d,\"signal\":%d}",
                     (int) pid, WTERMSIG(status));
        } else {
            snprintf(message, sizeof message, "{\"type\":\"exited\",\"pid\":%d,\"code\":%d}",
                     (int) pid, WEXITSTATUS(status));
        }
        send_message(control, message);
    }
}

/* How many threads this process runs. */
static int thread_count(void) {
    DIR *tasks = opendir("/proc/self/task");
    int count = 0;
    if (tasks == NULL) {
        return -1;
    }
    for (struct dirent *entry = readdir(tasks); entry != NULL; entry = readdir(tasks)) {
        if (entry->d_name[0] != '.') {
            count++;
        }
    }
    closedir(tasks);
    return count;
}

/* Starts serving: keepers' ends are noticed, and the server hears that the template is ready. */
void o16n_template_ready(int *control) {
    int threads = thread_count();
    if (threads != 1) {
        /* A thread could hold a lock (the allocator's, a library's) at the fork, which every
         * worker would then inherit locked forever. */
        dprintf(2, "o16n template: %d threads run; a template must have one (are BLAS threads "
                   "limited?)\n", threads);
        _exit(SANDBOX_FAILURE_EXIT);
    }
    if (pipe2(child_ended, O_CLOEXEC | O_NONBLOCK) != 0) {
        _exit(SANDBOX_FAILURE_EXIT);
    }
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_child_ended;
    action.sa_flags = SA_RESTART | SA_NOCLDSTOP;
    sigaction(SIGCHLD, &action, NULL);
    char message[64];
    snprintf(message, sizeof message, "{\"type\":\"ready\",\"pid\":%d}", (int) getpid());
    send_message(*control, message);
}

/*
 * Waits for the next request, reporting ended keepers meanwhile. Fills `message` (of
 * `*capacity` bytes) and `descriptors` (room for MAX_DESCRIPTORS_PER_REQUEST), sets `*count` to
 * how many came, and sets `*length` (0 when the socket failed, -1 when the request brought too
 * few or too many descriptors; R checks the count against the request).
 */
void o16n_template_receive(int *control, unsigned char *message, int *capacity, int *length,
                           int *descriptors, int *count_received) {
    for (;;) {
        struct pollfd waiting[2] = {{*control, POLLIN, 0}, {child_ended[0], POLLIN, 0}};
        if (poll(waiting, 2, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            *length = 0;
            return;
        }
        if (waiting[1].revents & POLLIN) {
            report_exits(*control);
        }
        if (!(waiting[0].revents & (POLLIN | POLLHUP | POLLERR))) {
            continue;
        }
        char space[CMSG_SPACE(sizeof(int) * MAX_DESCRIPTORS_PER_REQUEST)];
        struct iovec part = {message, (size_t) *capacity};
        struct msghdr header;
        memset(&header, 0, sizeof header);
        header.msg_iov = &part;
        header.msg_iovlen = 1;
        header.msg_control = space;
        header.msg_controllen = sizeof space;
        ssize_t received = recvmsg(*control, &header, MSG_CMSG_CLOEXEC);
        if (received < 0 && (errno == EINTR || errno == EAGAIN)) {
            continue;
        }
        if (received <= 0) {
            *length = 0;
            return;
        }
        int count = 0;
        for (struct cmsghdr *item = CMSG_FIRSTHDR(&header); item != NULL;
             item = CMSG_NXTHDR(&header, item)) {
            if (item->cmsg_level != SOL_SOCKET || item->cmsg_type != SCM_RIGHTS) {
                continue;
            }
            int carried = (int) ((item->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            int *fds = (int *) CMSG_DATA(item);
            for (int index = 0; index < carried; index++) {
                if (count < MAX_DESCRIPTORS_PER_REQUEST) {
                    descriptors[count++] = fds[index];
                } else {
                    close(fds[index]);
                }
            }
        }
        if (count < DESCRIPTORS_PER_REQUEST || (header.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) {
            for (int index = 0; index < count; index++) {
                close(descriptors[index]);
            }
            *length = -1;
            return;
        }
        *count_received = count;
        *length = (int) received;
        return;
    }
}

/* Closes the `*count` descriptors of a request that is not served. */
void o16n_template_discard(int *descriptors, int *count) {
    for (int index = 0; index < *count; index++) {
        close(descriptors[index]);
    }
}

/* Tells the server that a request could not be served. */
void o16n_template_refuse(int *control, double *id, char **error) {
    char message[1024];
    char quoted[768];
    size_t used = 0;
    for (const char *at = *error; *at != '\0' && used + 2 < sizeof quoted; at++) {
        char c = *at;
        if (c == '"' || c == '\\') {
            quoted[used++] = '\\';
        }
        quoted[used++] = (c < 0x20) ? ' ' : c;
    }
    quoted[used] = '\0';
    if (*id >= 0) {
        snprintf(message, sizeof message, "{\"type\":\"fork_failed\",\"id\":%.0f,\"error\":\"%s\"}",
                 *id, quoted);
    } else {
        snprintf(message, sizeof message, "{\"type\":\"fork_failed\",\"id\":null,\"error\":\"%s\"}",
                 quoted);
    }
    send_message(*control, message);
}

static void fail(const char *what) {
    char message[512];
    int length = snprintf(message, sizeof message,
                          "o16n template: cannot start the worker in its sandbox: %s: %s\n", what,
                          strerror(errno));
    if (write(2, message, (size_t) length) < 0) {
        /* Nothing more can be said. */
    }
    _exit(SANDBOX_FAILURE_EXIT);
}

static void must(int result, const char *what) {
    if (result != 0) {
        fail(what);
    }
}

/* Leaves the keeper only what it needs of root: signalling its worker, which runs as another
 * user id (CAP_KILL). Returns 0, or -1 when a step failed. */
static int keep_only_kill(int last_cap) {
    for (int capability = 0; capability <= last_cap; capability++) {
        if (capability != CAP_KILL && prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0) {
            return -1;
        }
    }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0) {
        return -1;
    }
    struct __user_cap_header_struct cap_header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct cap_data[2];
    memset(cap_data, 0, sizeof cap_data);
    cap_data[0].effective = cap_data[0].permitted = 1u << CAP_KILL;
    if (syscall(SYS_capset, &cap_header, cap_data) != 0) {
        return -1;
    }
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* Waits for the worker, kills it when the lifeline closes, and ends as it ended. A keeper that
 * cannot give up its other capabilities kills the worker at once: it never keeps them. */
static void keep(pid_t worker, int lifeline, int last_cap) {
    if (keep_only_kill(last_cap) != 0) {
        kill(worker, SIGKILL);
    }
    int null = open("/dev/null", O_RDWR);
    for (int descriptor = 0; descriptor <= 4; descriptor++) {
        dup2(null, descriptor);
    }
    close(null);
    int worker_ended = (int) syscall(SYS_pidfd_open, worker, 0);
    for (;;) {
        struct pollfd waiting[2] = {{lifeline, POLLIN, 0}, {worker_ended, POLLIN, 0}};
        if (poll(waiting, worker_ended >= 0 ? 2 : 1, -1) < 0) {
            if (errno == EINTR) {
                continue;
            }
            break;
        }
        if (worker_ended >= 0 && waiting[1].revents) {
            break;
        }
        char byte;
        if (waiting[0].revents && read(lifeline, &byte, 1) <= 0) {
            kill(worker, SIGKILL);
            break;
        }
    }
    int status;
    while (waitpid(worker, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        signal(WTERMSIG(status), SIG_DFL);
        kill(getpid(), WTERMSIG(status));
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static void loopback_up(void) {
    int probe = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (probe < 0) {
        fail("socket");
    }
    struct ifreq request;
    memset(&request, 0, sizeof request);
    strncpy(request.ifr_name, "lo", IFNAMSIZ - 1);
    must(ioctl(probe, SIOCGIFFLAGS, &request), "read the loopback's flags");
    request.ifr_flags |= IFF_UP;
    must(ioctl(probe, SIOCSIFFLAGS, &request), "bring the loopback up");
    close(probe);
}

static void set_limit(int resource, double value, const char *what) {
    if (value > 0) {
        struct rlimit limit = {(rlim_t) value, (rlim_t) value};
        must(setrlimit(resource, &limit), what);
    }
}

static int last_capability(void) {
    FILE *file = fopen("/proc/sys/kernel/cap_last_cap", "r");
    int last = -1;
    if (file == NULL || fscanf(file, "%d", &last) != 1) {
        fail("read the last capability");
    }
    fclose(file);
    return last;
}

/* Builds the worker's sandbox; `paths` are its working directory in the template's view, that
 * view, its home, its host name and the mount options (sizes) of its /tmp and /dev/shm;
 * `limits` are address space, processes, file size and open files (0 for none). */
static void enter_sandbox(char **paths, uid_t uid, int network, double *limits, int last_cap) {
    const char *workdir = paths[0], *work_view = paths[1], *home = paths[2], *hostname = paths[3];
    const char *tmp_options = paths[4], *shm_options = paths[5];
    must(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), "make the mounts private");
    must(umount2("/proc", MNT_DETACH), "unmount the template's /proc");
    must(mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL), "mount /proc");
    /* Sized: these live in memory that no address-space limit counts. */
    must(mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, tmp_options), "mount /tmp");
    must(mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, shm_options),
         "mount /dev/shm");
    must(mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC,
               "newinstance,ptmxmode=0666,mode=620"),
         "mount /dev/pts");
    must(mount(workdir, home, NULL, MS_BIND, NULL), "bind the working directory");
    must(umount2(work_view, MNT_DETACH), "unmount the other working directories");
    must(sethostname(hostname, strlen(hostname)), "set the host name");
    if (!network) {
        loopback_up();
    }
    must(chdir(home), "enter the working directory");
    set_limit(RLIMIT_AS, limits[0], "limit the address space");
    set_limit(RLIMIT_NPROC, limits[1], "limit the processes");
    set_limit(RLIMIT_FSIZE, limits[2], "limit the file size");
    set_limit(RLIMIT_NOFILE, limits[3], "limit the open files");
    /* The bounding set can only be emptied while the capability to do so is still held. */
    for (int capability = 0; capability <= last_cap; capability++) {
        must(prctl(PR_CAPBSET_DROP, capability, 0, 0, 0), "drop a bounding capability");
    }
    must(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0), "clear the ambient set");
    must(setgroups(0, NULL), "drop the supplementary groups");
    must(setresgid(uid, uid, uid), "set the group id");
    /* Leaving root clears the permitted and effective sets; the inheritable set goes here. */
    must(setresuid(uid, uid, uid), "set the user id");
    struct __user_cap_header_struct cap_header = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct cap_data[2];
    memset(cap_data, 0, sizeof cap_data);
    must((int) syscall(SYS_capset, &cap_header, cap_data), "clear the capabilities");
    must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs");
    /* A change of user makes a process undumpable, which would leave /proc/self (and the
     * /dev/fd links R opens its protocol through) to root; a spawned worker is dumpable. */
    must(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "stay dumpable");
    uid_t real, effective, saved;
    if (getresuid(&real, &effective, &saved) != 0 || real != uid || effective != uid ||
        saved != uid || getgroups(0, NULL) != 0) {
        errno = EPERM;
        fail("change the identity");
    }
}

/* The value of one hex digit, or -1. */
static int hex_digit(char digit) {
    if (digit >= '0' && digit <= '9') return digit - '0';
    if (digit >= 'a' && digit <= 'f') return digit - 'a' + 10;
    if (digit >= 'A' && digit <= 'F') return digit - 'A' + 10;
    return -1;
}

/*
 * Installs the server's system-call filters (crates/runtime/src/seccomp.rs: classic BPF
 * programs, `struct sock_filter` little-endian, in hex), after no_new_privs, in a worker that
 * runs no user code yet. A worker that cannot install them ends: it never runs code
 * unfiltered. Called by the R worker script, spawned or forked.
 */
void o16n_install_filters(char **programs, int *count) {
    errno = 0;
    must(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "set no_new_privs");
    for (int index = 0; index < *count; index++) {
        const char *text = programs[index];
        size_t digits = strlen(text);
        size_t instructions = digits / (2 * sizeof(struct sock_filter));
        if (digits == 0 || digits % (2 * sizeof(struct sock_filter)) != 0 ||
            instructions > BPF_MAXINSNS) {
            errno = EINVAL;
            fail("read a system-call filter");
        }
        struct sock_filter *program = calloc(instructions, sizeof *program);
        if (program == NULL) {
            fail("allocate a system-call filter");
        }
        unsigned char *bytes = (unsigned char *) program;
        for (size_t byte = 0; byte < digits / 2; byte++) {
            int high = hex_digit(text[2 * byte]), low = hex_digit(text[2 * byte + 1]);
            if (high < 0 || low < 0) {
                errno = EINVAL;
                fail("read a system-call filter");
            }
            bytes[byte] = (unsigned char) (high * 16 + low);
        }
        struct sock_fprog filter = {(unsigned short) instructions, program};
        must(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &filter, 0, 0),
             "install the system-call filter");
        free(program);
    }
}

/*
 * Forks the worker of a request. In the template, `*pid` is the keeper's pid (reported to the
 * server as `forked`), or 0 with a `fork_failed` sent; in the worker this returns with `*pid`
 * set to -1, the sandbox built and the worker's descriptors in place.
 */
void o16n_template_fork(int *control, double *id, int *descriptors, double *uid, int *network,
                        double *limits, char **paths, int *pid) {
    /* The request brought its network namespace after the four others when its network is on
     * (R checked the count). */
    int count = DESCRIPTORS_PER_REQUEST + (*network ? 1 : 0);
    int last_cap = last_capability();
    pid_t keeper = fork();
    if (keeper < 0) {
        char *error = strerror(errno);
        o16n_template_refuse(control, id, &error);
        *pid = 0;
        for (int index = 0; index < count; index++) {
            close(descriptors[index]);
        }
        return;
    }
    if (keeper > 0) {
        for (int index = 0; index < count; index++) {
            close(descriptors[index]);
        }
        char message[128];
        snprintf(message, sizeof message, "{\"type\":\"forked\",\"id\":%.0f,\"pid\":%d}", *id,
                 (int) keeper);
        send_message(*control, message);
        *pid = (int) keeper;
        return;
    }
    signal(SIGCHLD, SIG_DFL);
    close(*control);
    close(child_ended[0]);
    close(child_ended[1]);
    setsid();
    /* Above the descriptors they are about to take, so that no copy overwrites another. */
    int moved[MAX_DESCRIPTORS_PER_REQUEST];
    for (int index = 0; index < count; index++) {
        moved[index] = fcntl(descriptors[index], F_DUPFD_CLOEXEC, 10);
        if (moved[index] < 0) {
            fail("move the worker's descriptors");
        }
        close(descriptors[index]);
    }
    int stdin_pipe = moved[0], stdout_pipe = moved[1], stderr_pipe = moved[2];
    int lifeline = moved[3];
    int network_namespace = *network ? moved[4] : -1;
    /* As the R launcher does: the protocol on 3 and 4, the console on 1 and 2, nothing on 0. */
    if (dup2(stderr_pipe, 2) < 0 || dup2(stderr_pipe, 1) < 0 || dup2(stdin_pipe, 3) < 0 ||
        dup2(stdout_pipe, 4) < 0) {
        fail("take the worker's descriptors");
    }
    int null = open("/dev/null", O_RDONLY);
    if (null < 0 || dup2(null, 0) < 0) {
        fail("open /dev/null");
    }
    close(null);
    close(stdin_pipe);
    close(stdout_pipe);
    close(stderr_pipe);
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
    if (network_namespace < 0) {
        flags |= CLONE_NEWNET;
    }
    must(unshare(flags), "unshare the namespaces");
    if (network_namespace >= 0) {
        must(setns(network_namespace, CLONE_NEWNET), "join the network namespace");
        close(network_namespace);
    }
    /* The keeper shares the worker's process group, which the server interrupts; it ignores
     * that from before the worker exists, and the worker takes R's handlers back. */
    struct sigaction ignore, r_interrupt, r_terminate;
    memset(&ignore, 0, sizeof ignore);
    ignore.sa_handler = SIG_IGN;
    sigaction(SIGINT, &ignore, &r_interrupt);
    sigaction(SIGTERM, &ignore, &r_terminate);
    pid_t worker = fork();
    if (worker < 0) {
        fail("fork the worker");
    }
    if (worker > 0) {
        keep(worker, lifeline, last_cap);
    }
    sigaction(SIGINT, &r_interrupt, NULL);
    sigaction(SIGTERM, &r_terminate, NULL);
    close(lifeline);
    enter_sandbox(paths, (uid_t) *uid, *network, limits, last_cap);
    *pid = -1;
}
