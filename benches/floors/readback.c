/*
 * The read-back floor: `floor-readback ROOT SPEC` reads every file SPEC
 * names and compares it with the value there, and lists each group's
 * children to find those SPEC does not name (with their process count, as
 * `memslice plan` reports them). What a re-apply or a plan must read,
 * and no more. Exit 0 when the tree matches, 1 when it drifted.
 */
#include "floor.h"

static char *buf;
static size_t cap;

/* cgroup.subtree_control: every "+name" asked for is among the words. */
static int controllers_enabled(const char *asked, const char *enabled)
{
	char want[64];
	for (const char *p = asked; *p;) {
		while (*p == ' ' || *p == '+')
			p++;
		size_t len = strcspn(p, " ");
		if (len == 0)
			break;
		if (len >= sizeof want)
			return 0;
		memcpy(want, p, len);
		want[len] = '\0';
		p += len;
		int found = 0;
		for (const char *q = enabled; *q && !found;) {
			q += strspn(q, " \n");
			size_t word = strcspn(q, " \n");
			found = word == len && memcmp(q, want, len) == 0;
			q += word;
		}
		if (!found)
			return 0;
	}
	return 1;
}

static void report_unmanaged(const char *rel, void *ctx)
{
	const char *root = ctx;
	char path[PATH_MAX];
	ssize_t len = read_file(join(path, root, rel, "cgroup.procs"), &buf, &cap, 1);
	if (len < 0)
		die("cannot read", path);
	size_t procs = 0;
	for (ssize_t i = 0; i < len; i++)
		procs += buf[i] == '\n';
	printf("unmanaged %s (%zu processes)\n", rel, procs);
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: floor-readback ROOT SPEC\n");
		return 2;
	}
	const char *root = argv[1];
	struct spec spec = load_spec(argv[2]);
	char path[PATH_MAX];
	int drift = 0;
	for (size_t i = 0; i < spec.count; i++) {
		const struct group *group = &spec.groups[i];
		for (int k = 0; k < group->pairs; k++) {
			ssize_t len = read_file(join(path, root, group->path, group->file[k]), &buf, &cap, 0);
			if (len < 0)
				die("cannot read", path);
			int same;
			if (strcmp(group->file[k], "cgroup.subtree_control") == 0) {
				same = controllers_enabled(group->value[k], buf);
			} else {
				while (len > 0 && buf[len - 1] == '\n')
					buf[--len] = '\0';
				same = strcmp(buf, group->value[k]) == 0;
			}
			if (!same) {
				printf("drift %s: %s, want %s\n", path, buf, group->value[k]);
				drift = 1;
			}
		}
		if (*group->path)
			unmanaged_children(&spec, root, group->path, report_unmanaged, (void *)root);
	}
	if (fflush(stdout) != 0)
		die("cannot write", "stdout");
	return drift;
}
