/* store/files: see files.h. */
#include "store/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

bool files_name_ok(const char *name) {
  size_t n = name ? strlen(name) : 0;
  if (n == 0 || n > FILES_NAME_MAX || name[0] == '.')
    return false;
  return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

int files_path(const char *root, const char *id, const char *name, char *buf, size_t size) {
  /* Ids are base64url (no '/', no leading dot): they are names too. */
  if (!files_name_ok(id) || (name && !files_name_ok(name)))
    return -1;
  int n = name ? snprintf(buf, size, "%s/%s/%s", root, id, name) : snprintf(buf, size, "%s/%s", root, id);
  return n > 0 && (size_t)n < size ? 0 : -1;
}

static int remove_in(const char *root, const char *id, bool keep_input);

int files_remove_job(const char *root, const char *id) { return remove_in(root, id, false); }
int files_remove_outputs(const char *root, const char *id) { return remove_in(root, id, true); }

static int remove_in(const char *root, const char *id, bool keep_input) {
  char dir[4096];
  if (files_path(root, id, NULL, dir, sizeof dir) != 0) {
    errno = EINVAL;
    return -1;
  }
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0)
    return errno == ENOENT ? 0 : -1;
  DIR *d = fdopendir(fd);
  if (!d) {
    close(fd);
    return -1;
  }
  int rc = 0;
  for (struct dirent *e; (e = readdir(d)) != NULL;) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0 ||
        (keep_input && e->d_name[0] == '.'))
      continue;
    if (unlinkat(fd, e->d_name, 0) != 0 && errno != ENOENT &&
        !(errno == EISDIR && unlinkat(fd, e->d_name, AT_REMOVEDIR) == 0))
      rc = -1; /* a file a worker is still writing comes back on the next sweep */
  }
  closedir(d); /* closes fd */
  if (!keep_input && rmdir(dir) != 0 && errno != ENOENT)
    rc = -1;
  return rc;
}
