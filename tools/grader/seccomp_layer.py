"""The grader's second layer (staff only), for where bubblewrap cannot make namespaces (a
container under Docker's default profile, as on Gradescope): a piece runs as a user ID no
account has, with no_new_privs and a seccomp filter, all set in the piece's process between
fork and exec (sandbox.Piece calls `confine`).

The filter is libseccomp's (the library every container runtime builds its profiles with),
reached through its Python binding: Debian's `python3-seccomp` for the system's Python, or
`pyseccomp` (PyPI; the same interface over ctypes) in a virtual environment:
`pip install -e ".[grader]"`. It refuses, with EPERM:

- sockets: socket() of every family (AF_INET, AF_INET6, AF_PACKET, AF_NETLINK, and AF_UNIX,
  which would reach the machine's local services; socketpair() stays), and io_uring, which
  can open sockets on its own;
- namespaces and mounts: unshare, setns, clone with any CLONE_NEW* flag (clone3, whose flags
  a filter cannot read, answers ENOSYS, as under Docker, so that the C library falls back to
  clone), mount, umount2, pivot_root, chroot and the new mount API;
- other processes: ptrace, process_vm_readv/writev, kcmp;
- the kernel's keyrings (add_key, request_key, keyctl), bpf, perf_event_open, userfaultfd;
- System V shared memory, semaphores and message queues and POSIX message queues, which
  outlive the process that makes them.

Every other call is allowed, and a call of another architecture (32-bit x86, x32) kills the
process: the rules are written for the machine's own. The piece's user keeps no capability
(a user ID other than 0 holds none after exec, and no_new_privs keeps it so).
"""

import errno

# clone()'s namespace flags (linux/sched.h): any one of them makes a namespace.
CLONE_NEW_FLAGS = {"CLONE_NEWTIME": 0x80, "CLONE_NEWNS": 0x20000, "CLONE_NEWCGROUP": 0x02000000,
                   "CLONE_NEWUTS": 0x04000000, "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000,
                   "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000}
REFUSED = (
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsmount", "fsconfig", "fspick", "mount_setattr",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp",
    "add_key", "request_key", "keyctl", "bpf", "perf_event_open", "userfaultfd",
    "socket", "io_uring_setup", "io_uring_enter", "io_uring_register",
    "shmget", "shmat", "semget", "msgget", "mq_open",
)
MISSING = ('no libseccomp binding for Python (pip install -e ".[grader]" installs pyseccomp; the system\'s '
           "Python has python3-seccomp)")


def binding():
    """libseccomp's Python module (python3-seccomp's `seccomp`, else `pyseccomp`), or None."""
    try:
        import seccomp
    except ImportError:
        try:
            import pyseccomp as seccomp
        except ImportError:
            return None
    return seccomp


def problem():
    """None if the filter can be built here, else why not (one line)."""
    seccomp = binding()
    if seccomp is None:
        return MISSING
    try:
        make_filter(seccomp)
    except (OSError, RuntimeError, ValueError, AttributeError) as e:
        return f"libseccomp cannot build the filter ({type(e).__name__}: {e})"
    return None


def make_filter(seccomp=None):
    """The filter (not loaded yet)."""
    seccomp = seccomp or binding()
    refuse = seccomp.ERRNO(errno.EPERM)
    rules = seccomp.SyscallFilter(seccomp.ALLOW)
    for name in REFUSED:
        rules.add_rule(refuse, name)
    for flag in CLONE_NEW_FLAGS.values():
        rules.add_rule(refuse, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    rules.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    return rules


def confine(rules):
    """In the piece's process, after it became the piece's user and before exec: set
    no_new_privs and load `rules` (libseccomp sets no_new_privs itself when it loads; it is
    set here first so that it holds even if loading fails, which then raises)."""
    import ctypes

    pr_set_no_new_privs = 38
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_no_new_privs, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    rules.load()
