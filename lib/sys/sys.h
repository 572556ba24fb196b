/* SPDX-License-Identifier: MIT */
/*
 * sys/sys.h - the library's calls into the kernel, each with fail-nth injection so that
 * tests can make the n-th system call of the library fail.
 */
#ifndef DT_SYS_SYS_H
#define DT_SYS_SYS_H

#include <stddef.h>
#include <stdint.h>

/* 0 if [addr, addr + len) is mapped in this process, else -EFAULT. Cheap: one msync()
 * (MS_ASYNC walks the VMAs, it writes nothing back and touches no page). */
int sys_range_mapped(uint64_t addr, uint64_t len);

/* Zeroed memory, faulted in on first touch (anonymous mmap; huge pages advised from 2 MiB,
 * so that scans of big bitmaps do not miss the TLB on every word). NULL on failure. */
void *sys_zalloc_lazy(size_t size);
/* Advice on a mapping (madvise): 0 or -errno. */
int sys_madvise(void *addr, size_t len, int advice);
void sys_free_lazy(void *p, size_t size);

/* The system calls of the sources (lib/track), each fault-injectable: a negative errno on
 * failure, never -1 with errno. */
int sys_ioctl(int fd, unsigned long request, void *arg);
int sys_open(const char *path, int flags);
int sys_close(int fd);
void *sys_mmap(void *addr, size_t len, int prot, int flags, int fd, long offset, int *err);
int sys_munmap(void *addr, size_t len);
int64_t sys_pread(int fd, void *buf, size_t len, uint64_t off);
int64_t sys_read(int fd, void *buf, size_t len);
int64_t sys_write(int fd, const void *buf, size_t len);
int sys_userfaultfd(int flags);

/* Make the n-th library system call from now fail with -EIO-like errors (0: off). */
void sys_fail_nth(unsigned long n);
int sys_should_fail(void);

/* ---- sockets and waiting (lib/sys/net.c), for lib/transport --------------------------------
 *
 * Same rules as above: a negative errno on failure, EINTR retried, each call (but close and
 * shutdown, which tear down) fault-injectable through sys_fail_nth(). Sends never raise
 * SIGPIPE (MSG_NOSIGNAL): a closed peer gives -EPIPE. New descriptors are close-on-exec.
 */
struct sockaddr;
struct msghdr;
struct pollfd;
struct addrinfo;
struct iovec;

int sys_socket(int domain, int type, int protocol);
int sys_bind(int fd, const struct sockaddr *addr, unsigned addrlen);
int sys_listen(int fd, int backlog);
/* accept4(); flags as accept4's (SOCK_CLOEXEC is always added). */
int sys_accept(int fd, int flags);
/* Not retried on EINTR: the connection then proceeds asynchronously, reported as -EINPROGRESS
 * so the caller waits for writability and reads SO_ERROR, as after a non-blocking connect. */
int sys_connect(int fd, const struct sockaddr *addr, unsigned addrlen);
int sys_shutdown(int fd, int how);
int sys_setsockopt(int fd, int level, int name, const void *val, unsigned len);
int sys_getsockopt(int fd, int level, int name, void *val, unsigned *len);
int sys_getsockname(int fd, struct sockaddr *addr, unsigned *len);
/* Bytes moved (> 0 for a non-empty request), 0 at end of stream on receive. */
int64_t sys_sendmsg(int fd, const struct msghdr *msg, int flags);
int64_t sys_recv(int fd, void *buf, size_t len, int flags);
/* recvmsg() (MSG_CMSG_CLOEXEC is always added): bytes received, 0 at end of stream. */
int64_t sys_recvmsg(int fd, struct msghdr *msg, int flags);
int64_t sys_writev(int fd, const struct iovec *iov, int iovcnt);
/* Set or clear O_NONBLOCK. */
int sys_set_nonblock(int fd, int on);
/* An eventfd (counter 0, close-on-exec, non-blocking), used to wake a poll; sys_eventfd_wake()
 * makes it readable for good (not injectable: it runs on the shutdown path). */
int sys_eventfd(void);
int sys_eventfd_wake(int fd);
/* getaddrinfo() with its EAI_* codes turned into errnos: an unknown host -ENXIO, a temporary
 * failure -EAGAIN, bad hints -EINVAL, out of memory -ENOMEM. *res freed by freeaddrinfo(). */
int sys_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
		    struct addrinfo **res);

/* CLOCK_MONOTONIC in ns; never fails, not injectable (it is not a real system call). */
uint64_t sys_monotonic_ns(void);
#define SYS_NO_DEADLINE UINT64_MAX
/* A deadline timeout_ms from now; timeout_ms < 0: SYS_NO_DEADLINE. */
uint64_t sys_deadline_ms(int timeout_ms);
/* poll() until deadline (a sys_monotonic_ns() value, or SYS_NO_DEADLINE): the number of
 * ready fds, 0 when the deadline passed. An EINTR waits again for the time that is left. */
int sys_poll_until(struct pollfd *fds, unsigned nfds, uint64_t deadline);
/* Sleep until deadline or for at most max_ms, whichever comes first. */
void sys_sleep_until(uint64_t deadline, int max_ms);

/* The file-system side of UNIX sockets. */
/* The st_mode, device and inode of path, not following a symlink (lstat). */
int sys_lstat(const char *path, uint32_t *mode, uint64_t *dev, uint64_t *ino);
int sys_unlink(const char *path);
/* fstat(): st_mode and st_size of an open descriptor. */
int sys_fstat(int fd, uint32_t *mode, uint64_t *size);

/* The address of a UNIX socket path: -EINVAL for NULL or "", -ENAMETOOLONG. */
struct sockaddr_un;
int sys_unix_address(const char *path, struct sockaddr_un *sun);
/*
 * A listening UNIX stream socket at path (type_flags added to SOCK_STREAM, e.g.
 * SOCK_NONBLOCK). The file is made mode 0600 before listen(), so nobody connects earlier and
 * the process-wide umask is left alone; an old socket file at path is replaced, any other
 * kind of file is -EEXIST. *dev and *ino (both optional) identify the file made, so that only
 * that one is unlinked later. Returns the fd, or a negative errno with nothing left behind.
 */
int sys_listen_unix(const char *path, int type_flags, int backlog, uint64_t *dev, uint64_t *ino);
int sys_chmod(const char *path, uint32_t mode);

#endif
