#ifndef ZOO_SANDBOX_H
#define ZOO_SANDBOX_H

/* Confines the calling process (a child that parses one untrusted file) before it touches
 * the file: limits on CPU seconds and address space, every descriptor above 2 closed, and a
 * seccomp filter that allows only the system calls reading needs. Files can be opened for
 * reading only; execve, sockets, fork and everything else not listed fail with EPERM.
 * Returns 0 when the filter is installed, 1 when the limits are set but this platform has
 * no filter (not x86-64 Linux), -1 on failure. */
int zoo_sandbox_enter(unsigned long cpu_seconds, unsigned long long address_space_bytes);

#endif
