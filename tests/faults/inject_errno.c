/* A fault injector for the tests (tests/faults/): loaded with LD_PRELOAD into a script, it
 * counts the calls that change the disk under one folder and fails the N-th with an errno.
 *
 *   FAULT_DIR    absolute folder: only calls on paths (or descriptors opened) under it count
 *   FAULT_AT     N >= 1: the N-th counted call fails; 0: none fails
 *   FAULT_ERRNO  the errno of that failure (a number)
 *   FAULT_LOG    optional: a file that receives one line per counted call, "N op path"
 *
 * Counted: opening a file for writing (open, openat, creat), write, pwrite, sendfile,
 * copy_file_range, ftruncate, fsync, fdatasync, fchmod, mkdir, rename, link, symlink.
 * The counter is per process; children start again at 1.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#define MAX_FD 65536
static char watched_fd[MAX_FD];  /* descriptors opened for writing under FAULT_DIR */
static long counted = 0;

static const char *env_or(const char *name, const char *otherwise) {
    const char *value = getenv(name);
    return value && *value ? value : otherwise;
}

/* The absolute form of `path` (relative to dirfd), without resolving links: enough to tell
 * whether it lies under FAULT_DIR. */
static void absolute(int dirfd, const char *path, char *out, size_t size) {
    char base[PATH_MAX] = "";
    if (path[0] == '/') {
        snprintf(out, size, "%s", path);
        return;
    }
    if (dirfd == AT_FDCWD) {
        if (!getcwd(base, sizeof base)) base[0] = 0;
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t n = readlink(link, base, sizeof base - 1);
        base[n > 0 ? n : 0] = 0;
    }
    snprintf(out, size, "%s/%s", base, path);
}

static int under_dir(int dirfd, const char *path, char *abs, size_t size) {
    const char *dir = getenv("FAULT_DIR");
    if (!dir || !path) return 0;
    absolute(dirfd, path, abs, size);
    size_t n = strlen(dir);
    return strncmp(abs, dir, n) == 0 && (abs[n] == '/' || abs[n] == 0);
}

static void fd_path(int fd, char *out, size_t size) {
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, size - 1);
    out[n > 0 ? n : 0] = 0;
}

/* Count one call; nonzero if it is the one to fail (errno is then set). */
static int fails(const char *op, const char *path) {
    counted++;
    const char *log = getenv("FAULT_LOG");
    if (log) {
        int fd = (int)syscall(SYS_openat, AT_FDCWD, log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd >= 0) {
            char line[PATH_MAX + 64];
            int n = snprintf(line, sizeof line, "%ld %s %s\n", counted, op, path);
            if (n > 0) syscall(SYS_write, fd, line, (size_t)n);
            syscall(SYS_close, fd);
        }
    }
    if (counted == atol(env_or("FAULT_AT", "0"))) {
        errno = atoi(env_or("FAULT_ERRNO", "28"));
        return 1;
    }
    return 0;
}

#define REAL(name) static __typeof__(name) *real_##name; \
    if (!real_##name) real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

static int writing(int flags) { return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0; }

static int opened(int fd) {
    if (fd >= 0 && fd < MAX_FD) watched_fd[fd] = 1;
    return fd;
}

static int open_checked(int dirfd, const char *path, int flags, mode_t mode, int (*call)(int, const char *, int, mode_t)) {
    char abs[PATH_MAX * 2];
    if (writing(flags) && under_dir(dirfd, path, abs, sizeof abs)) {
        if (fails("open", abs)) return -1;
        return opened(call(dirfd, path, flags, mode));
    }
    int fd = call(dirfd, path, flags, mode);
    if (fd >= 0 && fd < MAX_FD) watched_fd[fd] = 0;
    return fd;
}

static int call_open(int dirfd, const char *path, int flags, mode_t mode) {
    REAL(open);
    (void)dirfd;
    return real_open(path, flags, mode);
}
static int call_open64(int dirfd, const char *path, int flags, mode_t mode) {
    REAL(open64);
    (void)dirfd;
    return real_open64(path, flags, mode);
}
static int call_openat(int dirfd, const char *path, int flags, mode_t mode) {
    REAL(openat);
    return real_openat(dirfd, path, flags, mode);
}
static int call_openat64(int dirfd, const char *path, int flags, mode_t mode) {
    REAL(openat64);
    return real_openat64(dirfd, path, flags, mode);
}

static mode_t mode_of(int flags, va_list args) {
    return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode_t)va_arg(args, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list args; va_start(args, flags); mode_t mode = mode_of(flags, args); va_end(args);
    return open_checked(AT_FDCWD, path, flags, mode, call_open);
}
int open64(const char *path, int flags, ...) {
    va_list args; va_start(args, flags); mode_t mode = mode_of(flags, args); va_end(args);
    return open_checked(AT_FDCWD, path, flags, mode, call_open64);
}
int openat(int dirfd, const char *path, int flags, ...) {
    va_list args; va_start(args, flags); mode_t mode = mode_of(flags, args); va_end(args);
    return open_checked(dirfd, path, flags, mode, call_openat);
}
int openat64(int dirfd, const char *path, int flags, ...) {
    va_list args; va_start(args, flags); mode_t mode = mode_of(flags, args); va_end(args);
    return open_checked(dirfd, path, flags, mode, call_openat64);
}
int creat(const char *path, mode_t mode) {
    return open(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
}

int close(int fd) {
    REAL(close);
    if (fd >= 0 && fd < MAX_FD) watched_fd[fd] = 0;
    return real_close(fd);
}

static int watched(int fd, const char *op) {
    if (fd < 0 || fd >= MAX_FD || !watched_fd[fd]) return 0;
    char path[PATH_MAX];
    fd_path(fd, path, sizeof path);
    return fails(op, path);
}

ssize_t write(int fd, const void *buf, size_t n) {
    REAL(write);
    if (watched(fd, "write")) return -1;
    return real_write(fd, buf, n);
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t offset) {
    REAL(pwrite64);
    if (watched(fd, "write")) return -1;
    return real_pwrite64(fd, buf, n, offset);
}
ssize_t sendfile(int out, int in, off_t *offset, size_t n) {
    REAL(sendfile);
    if (watched(out, "write")) return -1;
    return real_sendfile(out, in, offset, n);
}
ssize_t copy_file_range(int in, off_t *in_off, int out, off_t *out_off, size_t n, unsigned int flags) {
    REAL(copy_file_range);
    if (watched(out, "write")) return -1;
    return real_copy_file_range(in, in_off, out, out_off, n, flags);
}
int ftruncate(int fd, off_t length) {
    REAL(ftruncate);
    if (watched(fd, "ftruncate")) return -1;
    return real_ftruncate(fd, length);
}
int fsync(int fd) {
    REAL(fsync);
    if (watched(fd, "fsync")) return -1;
    return real_fsync(fd);
}
int fdatasync(int fd) {
    REAL(fdatasync);
    if (watched(fd, "fsync")) return -1;
    return real_fdatasync(fd);
}
int fchmod(int fd, mode_t mode) {
    REAL(fchmod);
    if (watched(fd, "fchmod")) return -1;
    return real_fchmod(fd, mode);
}

static int path_fails(int dirfd, const char *path, const char *op) {
    char abs[PATH_MAX * 2];
    return under_dir(dirfd, path, abs, sizeof abs) && fails(op, abs);
}

int mkdir(const char *path, mode_t mode) {
    REAL(mkdir);
    if (path_fails(AT_FDCWD, path, "mkdir")) return -1;
    return real_mkdir(path, mode);
}
int mkdirat(int dirfd, const char *path, mode_t mode) {
    REAL(mkdirat);
    if (path_fails(dirfd, path, "mkdir")) return -1;
    return real_mkdirat(dirfd, path, mode);
}
int rename(const char *from, const char *to) {
    REAL(rename);
    if (path_fails(AT_FDCWD, to, "rename")) return -1;
    return real_rename(from, to);
}
int renameat(int fromfd, const char *from, int tofd, const char *to) {
    REAL(renameat);
    if (path_fails(tofd, to, "rename")) return -1;
    return real_renameat(fromfd, from, tofd, to);
}
int link(const char *from, const char *to) {
    REAL(link);
    if (path_fails(AT_FDCWD, to, "link")) return -1;
    return real_link(from, to);
}
int symlink(const char *from, const char *to) {
    REAL(symlink);
    if (path_fails(AT_FDCWD, to, "symlink")) return -1;
    return real_symlink(from, to);
}
