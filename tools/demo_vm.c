/* SPDX-License-Identifier: MIT */
/*
 * tools/demo_vm.c - `dirtytrack demo`: the micro-VM, its four DMA devices and a live
 * migration to a second process over loopback TCP, with the three checks of the result.
 *
 * The destination is a child process (fork before anything is set up): it listens on an
 * ephemeral port it tells the parent through a pipe, receives, checks, resumes the VM, and
 * writes its struct dest_report back through a second pipe. The parent is the source VM.
 * With --no-device-tracking the container stays out of the dirty set: the devices' writes
 * after round 0 never reach the destination, the digest differs and the devices' records
 * name the stale pages. With --vfio-user the LOGGING device runs in a process of its own on
 * each side (`dirtytrack vfio-user-device`, exec'ed from this program), reached over
 * vfio-user: its DMA log crosses the socket every round and its state moves with the
 * vfio-user migration data. Without /dev/kvm, `dirtytrack migrate` runs instead (a process
 * workload) between two processes.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "migrate_output.h"
#include "vm_common.h"

static int read_full(int fd, void *buf, size_t len)
{
	for (size_t got = 0; got < len;) {
		ssize_t n = read(fd, (char *)buf + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		got += (size_t)n;
	}
	return 0;
}

static int write_full(int fd, const void *buf, size_t len)
{
	for (size_t done = 0; done < len;) {
		ssize_t n = write(fd, (const char *)buf + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		done += (size_t)n;
	}
	return 0;
}

static void child_destination(const struct vm_cli *c, int port_fd, int report_fd)
{
	struct dt_listener *l = dt_listen_tcp("127.0.0.1", 0);
	struct dest_report r;
	uint32_t port = l ? dt_listener_port(l) : 0;

	if (write_full(port_fd, &port, sizeof(port)) || !l)
		_exit(1);
	close(port_fd);
	vm_destination(c, l, &r);
	dt_listener_free(l);
	_exit(write_full(report_fd, &r, sizeof(r)) ? 1 : 0);
}

struct demo_ctx {
	struct out_progress progress;
};

static void on_round(void *opaque, const struct dt_round_stats *s, const char *json)
{
	out_round(&((struct demo_ctx *)opaque)->progress, s, json);
}

static int process_fallback(const char *why)
{
	char path[64];
	pid_t pid;
	int status, ret;

	printf("no usable /dev/kvm (%s): migrating a process workload instead\n", why);
	fflush(stdout);
	snprintf(path, sizeof(path), "unix:/tmp/dirtytrack-demo-%d.sock", (int)getpid());
	pid = fork();
	if (pid < 0)
		return 1;
	if (!pid) {
		char *argv[] = {"migrate", "--listen", path, NULL};

		_exit(migrate_cmd(3, argv));
	}
	usleep(300000);
	{
		char *argv[] = {"migrate",	"--to",	 path,	     "--size", "256M",
				"--dirty-rate", "20000", "--pinned", "64",     NULL};

		ret = migrate_cmd(9, argv);
	}
	waitpid(pid, &status, 0);
	return ret || !WIFEXITED(status) || WEXITSTATUS(status) ? 1 : 0;
}

static void demo_usage(FILE *f)
{
	fprintf(f,
		"usage: dirtytrack demo [--vfio-user] [options]\n"
		"                                   the micro-VM migrated to a second process\n"
		"       dirtytrack demo container   the container's semantics, step by step\n\n"
		"  --vfio-user           the logging device in a process of its own on each side,\n"
		"                        served over vfio-user (dirtytrack vfio-user-device)\n");
	vm_cli_usage(f);
}

/* A device server: this program's `vfio-user-device`, serving one client at path. */
struct devproc {
	char path[96];
	pid_t pid;
};

static int devproc_start(struct devproc *d, const char *side, const struct vm_cli *c)
{
	char rate[24], seed[24];
	struct stat st;

	snprintf(d->path, sizeof(d->path), "/tmp/dirtytrack-demo-%d-%s.sock", (int)getpid(), side);
	snprintf(rate, sizeof(rate), "%u", c->mo.dev.writes_per_sec);
	/* the seed the local logging device would have had (machine.c) */
	snprintf(seed, sizeof(seed), "%llu",
		 (unsigned long long)(c->mo.dev.seed * 31 + VDEV_LOGGING + 1));
	unlink(d->path);
	fflush(NULL);
	d->pid = fork();
	if (d->pid < 0)
		return -1;
	if (!d->pid) {
		char *argv[] = {"dirtytrack", "vfio-user-device",
				"--socket",   d->path,
				"--type",     "logging",
				"--dev-rate", rate,
				"--seed",     seed,
				"--once",     NULL};

		execv("/proc/self/exe", argv);
		perror("demo: exec of dirtytrack vfio-user-device");
		_exit(127);
	}
	for (int i = 0; i < 500 && stat(d->path, &st); i++)
		usleep(10000);
	if (stat(d->path, &st)) {
		fprintf(stderr, "demo: the %s device server did not start\n", side);
		return -1;
	}
	return 0;
}

/* It exits once its client is gone (within 3 s), else, or with kill_now, it is killed. */
static void devproc_stop(struct devproc *d, bool kill_now)
{
	int status;

	if (d->pid <= 0)
		return;
	for (int i = 0; !kill_now && i < 300 && !waitpid(d->pid, &status, WNOHANG); i++)
		usleep(10000);
	if (!waitpid(d->pid, &status, WNOHANG)) {
		kill(d->pid, SIGKILL);
		waitpid(d->pid, &status, 0);
	}
	unlink(d->path);
	d->pid = 0;
}

/* Takes --vfio-user out of argv (the other options are vm_cli's). */
static bool take_flag(int *argc, char **argv, const char *flag)
{
	for (int i = 1; i < *argc; i++) {
		if (strcmp(argv[i], flag))
			continue;
		memmove(&argv[i], &argv[i + 1], (size_t)(*argc - i) * sizeof(*argv));
		(*argc)--;
		return true;
	}
	return false;
}

int demo_vm(int argc, char **argv)
{
	struct dt_migrate_source_opts so = {.size = sizeof(so)};
	struct demo_ctx ctx = {0};
	struct dt_migrate_result res = {0};
	struct dest_report r;
	struct dt_transport *t;
	int port_pipe[2], report_pipe[2], status, ret, fd;
	struct devproc dev_src = {0}, dev_dst = {0};
	struct machine m;
	struct vm_cli c;
	uint32_t port;
	int exit_code = 1;
	bool vfu;
	pid_t pid;

	vm_cli_defaults(&c);
	vfu = take_flag(&argc, argv, "--vfio-user");
	if (vm_cli_parse(&c, argc, argv) != argc) {
		demo_usage(stderr);
		return 2;
	}
	/* DIRTYTRACK_DEMO_NO_KVM=1 takes the fallback on purpose (its test). */
	fd = getenv("DIRTYTRACK_DEMO_NO_KVM") ? -1 : open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return process_fallback(getenv("DIRTYTRACK_DEMO_NO_KVM") ? "DIRTYTRACK_DEMO_NO_KVM"
									 : strerror(errno));
	close(fd);
	dt_set_log(dt_log_stderr, NULL, c.verbose ? DT_LOG_INFO : DT_LOG_WARN);
	if (vfu) {
#ifndef DT_HAVE_VFIO_USER
		fprintf(stderr, "demo: --vfio-user: this build has no vfio-user (meson option "
				"vfio_user, needs json-c)\n");
		return 2;
#endif
		if (c.mo.vfu_path) {
			fprintf(stderr, "demo: --vfio-user starts its own device servers; no "
					"--device with it\n");
			return 2;
		}
		if (devproc_start(&dev_src, "src", &c) || devproc_start(&dev_dst, "dst", &c))
			goto out;
		c.mo.vfu_path = dev_dst.path; /* the destination's, copied by the fork below */
	}
	if (pipe(port_pipe) || pipe(report_pipe))
		goto out;
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		goto out;
	if (!pid) {
		close(port_pipe[0]);
		close(report_pipe[0]);
		child_destination(&c, port_pipe[1], report_pipe[1]);
	}
	close(port_pipe[1]);
	close(report_pipe[1]);
	if (vfu) {
		c.mo.vfu_path = dev_src.path;
		if (!c.json)
			printf("device servers: logging device in pid %d (source side) and pid %d "
			       "(destination side), over vfio-user\n",
			       (int)dev_src.pid, (int)dev_dst.pid);
	}
	if (read_full(port_pipe[0], &port, sizeof(port)) || !port) {
		fprintf(stderr, "demo: the destination did not start\n");
		waitpid(pid, &status, 0);
		goto out;
	}
	if (!c.json)
		printf("destination: pid %d, listening on 127.0.0.1:%u\n", (int)pid, port);
	ret = machine_new(&m, &c.mo, true);
	if (ret) {
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
		goto out;
	}
	ret = machine_start(&m);
	if (!ret)
		ret = machine_track_start(&m);
	if (ret) {
		machine_free(&m);
		kill(pid, SIGTERM);
		waitpid(pid, &status, 0);
		goto out;
	}
	if (!c.json)
		printf("source: %llu MiB VM, devices:%s%s%s%s, device tracking %s; running %.1f s\n",
		       (unsigned long long)(c.mo.vm.mem_size >> 20),
		       m.dev[VDEV_EMULATED] ? " emulated" : "",
		       m.dev[VDEV_LOGGING] ? " logging"
		       : m.has_remote	   ? " logging (vfio-user)"
					   : "",
		       m.dev[VDEV_PASSTHROUGH] ? " passthrough" : "", m.dev[VDEV_VMM] ? " vmm" : "",
		       c.mo.device_tracking ? "on" : "OFF", c.warmup_s);
	fflush(stdout);
	usleep((useconds_t)(c.warmup_s * 1e6));
	t = dt_connect_tcp("127.0.0.1", (uint16_t)port, 5000);
	if (!t) {
		fprintf(stderr, "demo: cannot connect to the destination: %s\n", strerror(errno));
		ret = -errno;
	} else {
		out_progress_begin(&ctx.progress, c.json, false);
		so.policy.max_downtime_ns = c.max_downtime_ms * 1000000;
		so.max_bandwidth = c.max_bandwidth;
		so.opaque = &ctx;
		so.on_round = on_round;
		ret = machine_migrate_out(&m, t, &so, &res);
		out_progress_end(&ctx.progress);
		dt_transport_shutdown(t);
		dt_transport_free(t);
	}
	vm_print_source(&c, ret, &res, &m);
	machine_free(&m);
	if (read_full(report_pipe[0], &r, sizeof(r))) {
		fprintf(stderr, "demo: the destination died before reporting\n");
		waitpid(pid, &status, 0);
		goto out;
	}
	waitpid(pid, &status, 0);
	devproc_stop(&dev_src, false);
	devproc_stop(&dev_dst, false);
	ret = vm_print_dest(&c, &r, res.digest);
	if (!c.json && !c.mo.device_tracking)
		printf("%s\n", ret ? "as expected without device dirty tracking: the devices' DMA "
				     "never reached the destination"
				   : "unexpected: nothing went stale without device tracking");
	exit_code = ret ? 1 : 0;
out:
	devproc_stop(&dev_src, true);
	devproc_stop(&dev_dst, true);
	return exit_code;
}
