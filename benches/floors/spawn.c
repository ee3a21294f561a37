/*
 * The spawn floor: `floor-spawn GROUP [FILE=VALUE...] -- PROGRAM [ARG...]`
 * creates the cgroup directory GROUP, writes the files given, starts
 * PROGRAM in it with clone3(CLONE_INTO_CGROUP) (charged there from its
 * first instruction), waits for it, removes GROUP and exits with
 * PROGRAM's status (128+N for signal N). What `memslice run` must do on
 * the real kernel, and no more. Needs Linux 5.7.
 */
#include "floor.h"

#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif

int main(int argc, char **argv)
{
	int dash = 2;
	while (dash < argc && strcmp(argv[dash], "--") != 0)
		dash++;
	if (argc < 3 || dash + 1 >= argc) {
		fprintf(stderr, "usage: floor-spawn GROUP [FILE=VALUE...] -- PROGRAM [ARG...]\n");
		return 2;
	}
	const char *group = argv[1];
	char path[PATH_MAX];
	if (mkdir(group, 0755) < 0)
		die("cannot create", group);
	for (int i = 2; i < dash; i++) {
		char *eq = strchr(argv[i], '=');
		if (!eq)
			die_msg("not FILE=VALUE:", argv[i]);
		*eq = '\0';
		int fd = open(join(path, group, "", argv[i]), O_WRONLY | O_CLOEXEC);
		size_t len = strlen(eq + 1);
		if (fd < 0 || write(fd, eq + 1, len) != (ssize_t)len || close(fd) < 0)
			die("cannot write", path);
	}
	int dir = open(group, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir < 0)
		die("cannot open", group);
	struct clone_args args = {
		.flags = CLONE_INTO_CGROUP,
		.exit_signal = SIGCHLD,
		.cgroup = (uint64_t)dir,
	};
	long pid = syscall(SYS_clone3, &args, sizeof args);
	if (pid < 0)
		die("clone3 into", group);
	if (pid == 0) {
		execv(argv[dash + 1], argv + dash + 1);
		_exit(errno == ENOENT ? 127 : 126);
	}
	close(dir);
	int status;
	if (waitpid((pid_t)pid, &status, 0) < 0)
		die("cannot wait for", argv[dash + 1]);
	if (rmdir(group) < 0)
		die("cannot remove", group);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
