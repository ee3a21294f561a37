/*
 * `timeit PROGRAM [ARG...]`: runs PROGRAM (an absolute path, no PATH
 * search) with its standard output on /dev/null and prints how long it
 * took, from fork to the end of its wait, in microseconds. Exits 2 when
 * it failed, so a timing is never taken of a refusal. The VM scenarios'
 * stopwatch: a shell's own `time` is too coarse, and `date` around a
 * command would time date's start-up too.
 */
#include "floor.h"

#include <stdint.h>
#include <sys/wait.h>
#include <time.h>

static uint64_t now_us(void)
{
	struct timespec ts;
	if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
		die("cannot read", "CLOCK_MONOTONIC");
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int main(int argc, char **argv)
{
	if (argc < 2 || argv[1][0] != '/') {
		fprintf(stderr, "usage: timeit /PATH/TO/PROGRAM [ARG...]\n");
		return 2;
	}
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null < 0)
		die("cannot open", "/dev/null");
	uint64_t started = now_us();
	pid_t pid = fork();
	if (pid < 0)
		die("cannot fork for", argv[1]);
	if (pid == 0) {
		if (dup2(null, STDOUT_FILENO) < 0)
			_exit(126);
		execv(argv[1], argv + 1);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0)
		die("cannot wait for", argv[1]);
	uint64_t took = now_us() - started;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "timeit: %s failed (status 0x%x)\n", argv[1], (unsigned)status);
		return 2;
	}
	printf("%llu\n", (unsigned long long)took);
	return 0;
}
