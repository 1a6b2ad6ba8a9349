#define _GNU_SOURCE
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#if defined(__linux__) && defined(__x86_64__)
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#define ZOO_HAVE_FILTER 1
#endif

static void close_inherited_descriptors(void) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3U, ~0U, 0U) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    for (long fd = 3; fd < (max > 0 && max < 65536 ? max : 65536); fd++) close((int)fd);
}

#ifdef ZOO_HAVE_FILTER
#define ALLOW(nr) BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)
/* open/openat: allowed only without write, create, truncate or append flags. */
#define WRITE_FLAGS (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND)
#define ARG_LOW(i) (offsetof(struct seccomp_data, args) + (i) * sizeof(__u64))
#define OPEN_READ_ONLY(nr, flags_arg)                                                  \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 4),                                   \
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LOW(flags_arg)),                            \
    BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, WRITE_FLAGS, 1, 0),                           \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),                                      \
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM)

static int install_filter(void) {
    struct sock_filter program[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        /* x32 system calls share the architecture tag: refuse them. */
        BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 0x40000000, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        ALLOW(__NR_read), ALLOW(__NR_pread64), ALLOW(__NR_readv), ALLOW(__NR_preadv),
        ALLOW(__NR_write), ALLOW(__NR_writev),
        ALLOW(__NR_close), ALLOW(__NR_lseek), ALLOW(__NR_fstat), ALLOW(__NR_stat), ALLOW(__NR_lstat),
        ALLOW(__NR_newfstatat), ALLOW(__NR_statx), ALLOW(__NR_access), ALLOW(__NR_faccessat),
        ALLOW(__NR_readlink), ALLOW(__NR_readlinkat), ALLOW(__NR_getcwd), ALLOW(__NR_fcntl),
        ALLOW(__NR_getdents64), ALLOW(__NR_ioctl), ALLOW(__NR_flock),
        ALLOW(__NR_mmap), ALLOW(__NR_munmap), ALLOW(__NR_mremap), ALLOW(__NR_mprotect),
        ALLOW(__NR_brk), ALLOW(__NR_madvise),
        ALLOW(__NR_futex), ALLOW(__NR_sched_yield), ALLOW(__NR_sched_getaffinity),
        ALLOW(__NR_set_robust_list), ALLOW(__NR_rseq),
        ALLOW(__NR_rt_sigaction), ALLOW(__NR_rt_sigprocmask), ALLOW(__NR_rt_sigreturn),
        ALLOW(__NR_sigaltstack), ALLOW(__NR_tgkill), ALLOW(__NR_getpid), ALLOW(__NR_gettid),
        ALLOW(__NR_getuid), ALLOW(__NR_geteuid), ALLOW(__NR_getgid), ALLOW(__NR_getegid),
        ALLOW(__NR_clock_gettime), ALLOW(__NR_gettimeofday), ALLOW(__NR_time),
        ALLOW(__NR_nanosleep), ALLOW(__NR_clock_nanosleep),
        ALLOW(__NR_getrandom), ALLOW(__NR_uname), ALLOW(__NR_sysinfo),
        ALLOW(__NR_getrlimit), ALLOW(__NR_prlimit64),
        ALLOW(__NR_exit), ALLOW(__NR_exit_group),
        OPEN_READ_ONLY(__NR_openat, 2),
        OPEN_READ_ONLY(__NR_open, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
    };
    struct sock_fprog fprog = { (unsigned short)(sizeof(program) / sizeof(program[0])), program };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return -1;
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0) return -1;
    return 0;
}
#endif

int zoo_sandbox_enter(unsigned long cpu_seconds, unsigned long long address_space_bytes) {
    struct rlimit cpu = { cpu_seconds, cpu_seconds + 1 };
    struct rlimit space = { address_space_bytes, address_space_bytes };
    struct rlimit no_core = { 0, 0 };
    if (setrlimit(RLIMIT_CPU, &cpu) != 0) return -1;
    if (setrlimit(RLIMIT_AS, &space) != 0) return -1;
    setrlimit(RLIMIT_CORE, &no_core);
    close_inherited_descriptors();
#ifdef ZOO_HAVE_FILTER
    return install_filter();
#else
    return 1;
#endif
}
