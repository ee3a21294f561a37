/*
 * The C floors: the least a program must do to get the same kernel work
 * done as memslice, so the benchmarks can say how far memslice is from it.
 * Each floor checks every error and exits 2 on one; none is a product.
 *
 * A tree is described by a spec file, one group a line, in preorder:
 *     GROUP<TAB>FILE=VALUE<TAB>FILE=VALUE...
 * GROUP is relative to the root, empty for the root itself; the FILE=VALUE
 * pairs are what memslice writes there (cgroup.subtree_control first).
 * The benchmarks write the spec from the same config memslice reads.
 */
#ifndef FLOOR_H
#define FLOOR_H

#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_PAIRS 16

struct group {
	char *path;          /* relative, "" for the root */
	char *file[MAX_PAIRS];
	char *value[MAX_PAIRS];
	int pairs;
};

struct spec {
	struct group *groups;
	size_t count;
	char **sorted;       /* paths, sorted, for is_managed() */
};

static inline void die(const char *what, const char *path)
{
	fprintf(stderr, "floor: %s %s: %s\n", what, path, strerror(errno));
	exit(2);
}

static inline void die_msg(const char *what, const char *path)
{
	fprintf(stderr, "floor: %s %s\n", what, path);
	exit(2);
}

static inline void *grow(void *ptr, size_t size)
{
	void *bigger = realloc(ptr, size);
	if (!bigger)
		die("out of memory for", "the spec");
	return bigger;
}

/*
 * Reads a file into buf (NUL-terminated); returns its length, or -1 with
 * errno. A cgroup interface file other than cgroup.procs is one seq_file
 * record, and a regular file ends where a read comes short, so a read
 * shorter than the buffer is the end; `until_eof` keeps reading to a read
 * of 0, which multi-record files (cgroup.procs) need.
 */
static inline ssize_t read_file(const char *path, char **buf, size_t *cap, int until_eof)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	size_t len = 0;
	for (;;) {
		if (*cap - len < 2) {
			*cap = *cap ? *cap * 2 : 4096;
			*buf = grow(*buf, *cap);
		}
		ssize_t n = read(fd, *buf + len, *cap - len - 1);
		if (n < 0) {
			int saved = errno;
			close(fd);
			errno = saved;
			return -1;
		}
		len += (size_t)n;
		if (n == 0 || (!until_eof && len < *cap - 1))
			break;
	}
	close(fd);
	(*buf)[len] = '\0';
	return (ssize_t)len;
}

static inline int by_path(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static inline struct spec load_spec(const char *path)
{
	struct spec spec = {0};
	char *text = NULL;
	size_t cap = 0;
	if (read_file(path, &text, &cap, 1) < 0)
		die("cannot read", path);
	size_t allocated = 0;
	for (char *line = text, *next; line && *line; line = next) {
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		if (spec.count == allocated) {
			allocated = allocated ? allocated * 2 : 1024;
			spec.groups = grow(spec.groups, allocated * sizeof *spec.groups);
		}
		struct group *group = &spec.groups[spec.count++];
		memset(group, 0, sizeof *group);
		char *field = strchr(line, '\t');
		if (field)
			*field++ = '\0';
		group->path = line;
		while (field && *field) {
			char *end = strchr(field, '\t');
			if (end)
				*end++ = '\0';
			char *eq = strchr(field, '=');
			if (!eq || group->pairs == MAX_PAIRS)
				die_msg("bad FILE=VALUE in the spec:", field);
			*eq = '\0';
			group->file[group->pairs] = field;
			group->value[group->pairs++] = eq + 1;
			field = end;
		}
	}
	spec.sorted = grow(NULL, (spec.count + 1) * sizeof *spec.sorted);
	for (size_t i = 0; i < spec.count; i++)
		spec.sorted[i] = spec.groups[i].path;
	qsort(spec.sorted, spec.count, sizeof *spec.sorted, by_path);
	return spec;
}

static inline int is_managed(const struct spec *spec, const char *path)
{
	return bsearch(&path, spec->sorted, spec->count, sizeof *spec->sorted, by_path) != NULL;
}

/* ROOT/GROUP/NAME into out (PATH_MAX); NAME or GROUP may be empty. */
static inline const char *join(char *out, const char *root, const char *group, const char *name)
{
	int n = snprintf(out, PATH_MAX, "%s%s%s%s%s", root, *group ? "/" : "", group,
			 *name ? "/" : "", name);
	if (n < 0 || n >= PATH_MAX)
		die_msg("path too long under", root);
	return out;
}

/*
 * Calls each(child) for every child group of ROOT/GROUP that the spec does
 * not name (memslice reports those); `rel` is the child's relative path.
 */
static inline void unmanaged_children(const struct spec *spec, const char *root, const char *group,
			       void (*each)(const char *rel, void *ctx), void *ctx)
{
	char dir_path[PATH_MAX], rel[PATH_MAX];
	DIR *dir = opendir(join(dir_path, root, group, ""));
	if (!dir)
		die("cannot list", dir_path);
	struct dirent *entry;
	errno = 0;
	while ((entry = readdir(dir))) {
		if (entry->d_type != DT_DIR || entry->d_name[0] == '.')
			continue;
		int n = snprintf(rel, sizeof rel, "%s%s%s", group, *group ? "/" : "", entry->d_name);
		if (n < 0 || (size_t)n >= sizeof rel)
			die_msg("path too long under", dir_path);
		if (!is_managed(spec, rel))
			each(rel, ctx);
	}
	if (errno)
		die("cannot list", dir_path);
	closedir(dir);
}

#endif
