/*
 * The apply floor: `floor-apply ROOT SPEC` creates every group of SPEC
 * under ROOT and writes its files, in spec order (a parent enables its
 * controllers before its children's files exist). What a first
 * `memslice apply` must do on an empty tree, and no more.
 */
#include "floor.h"

#include <sys/stat.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: floor-apply ROOT SPEC\n");
		return 2;
	}
	const char *root = argv[1];
	struct spec spec = load_spec(argv[2]);
	char path[PATH_MAX];
	for (size_t i = 0; i < spec.count; i++) {
		const struct group *group = &spec.groups[i];
		if (*group->path && mkdir(join(path, root, group->path, ""), 0755) < 0 && errno != EEXIST)
			die("cannot create", path);
		for (int k = 0; k < group->pairs; k++) {
			int fd = open(join(path, root, group->path, group->file[k]), O_WRONLY | O_CLOEXEC);
			if (fd < 0)
				die("cannot open", path);
			size_t len = strlen(group->value[k]);
			/* One write: the kernel parses each write(2) as a whole value. */
			if (write(fd, group->value[k], len) != (ssize_t)len)
				die("cannot write", path);
			if (close(fd) < 0)
				die("cannot close", path);
		}
	}
	return 0;
}
