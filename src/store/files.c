/* store/files: see files.h. */
#include "store/files.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/stat.h>
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

int files_keep_input(const char *root, const char *id, int fd, int64_t bytes, bool sync) {
  char dir[4096], path[4096 + 16];
  if (files_path(root, id, NULL, dir, sizeof dir) != 0)
    return -1;
  mkdir(root, 0755);
  mkdir(dir, 0755);
  snprintf(path, sizeof path, "%s/" FILES_INPUT_NAME, dir);
  int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (out < 0)
    return -1;
  int rc = 0;
  off_t off = 0;
  while (rc == 0 && off < bytes) {
    /* sendfile: a memfd and a file on another filesystem (copy_file_range
     * refuses those since Linux 5.19). */
    ssize_t n = sendfile(out, fd, &off, (size_t)(bytes - off));
    if (n <= 0 && !(n < 0 && errno == EINTR))
      rc = -1;
  }
  if (rc == 0 && sync && fsync(out) != 0)
    rc = -1;
  if (close(out) != 0)
    rc = -1;
  if (rc != 0)
    unlink(path);
  return rc;
}

int files_open_input(const char *root, const char *id, int64_t bytes) {
  char path[4096 + 16];
  if (!root || files_path(root, id, NULL, path, sizeof path - 16) != 0)
    return -1;
  strcat(path, "/" FILES_INPUT_NAME);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  struct stat st;
  if (fd < 0 || fstat(fd, &st) != 0 || st.st_size != bytes) {
    if (fd >= 0)
      close(fd);
    return -1;
  }
  return fd;
}
