/*
 * The status floor: `floor-status ROOT SPEC FILE...` reads the named files
 * of every group SPEC names but the root (a file that is absent is
 * skipped, as memslice shows it empty) and of the children SPEC does not
 * name, lists each group's children to find those, and writes what it
 * read to stdout. With the files `status --json` and `metrics` show, it
 * is their floor; with the files the table shows, the summary's.
 */
#include "floor.h"

struct reader {
	const char *root;
	char **files;
	int count;
	char *buf;
	size_t cap;
};

static void show(const char *rel, void *ctx)
{
	struct reader *reader = ctx;
	char path[PATH_MAX];
	for (int k = 0; k < reader->count; k++) {
		int procs = strcmp(reader->files[k], "cgroup.procs") == 0;
		join(path, reader->root, rel, reader->files[k]);
		ssize_t len = read_file(path, &reader->buf, &reader->cap, procs);
		if (len < 0 && errno == ENOENT)
			continue;
		if (len < 0)
			die("cannot read", path);
		if (printf("%s\n", path) < 0 || fwrite(reader->buf, 1, (size_t)len, stdout) != (size_t)len)
			die("cannot write", "stdout");
	}
}

int main(int argc, char **argv)
{
	if (argc < 4) {
		fprintf(stderr, "usage: floor-status ROOT SPEC FILE...\n");
		return 2;
	}
	struct reader reader = {.root = argv[1], .files = argv + 3, .count = argc - 3};
	struct spec spec = load_spec(argv[2]);
	for (size_t i = 0; i < spec.count; i++) {
		const char *group = spec.groups[i].path;
		if (!*group)
			continue;
		show(group, &reader);
		unmanaged_children(&spec, reader.root, group, show, &reader);
	}
	if (fflush(stdout) != 0)
		die("cannot write", "stdout");
	return 0;
}
