// Advisory locks on output folders' lock files (src/io/lock.ts): flock on a descriptor of the
// process's own, which the kernel releases when the process exits, however it exits, so that a
// killed run leaves no stale lock. Here rather than in TypeScript because node:fs has no flock.
#include "common.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>

MDM_API int32_t mdm_lock_file(const char* path, const void* holder, int64_t holder_len, mdm_status* st) {
  GUARD(st, -1, {
    if (path == nullptr || holder_len < 0) throw std::invalid_argument("lock_file: bad arguments");
    // Close-on-exec: a child process must not inherit (and so prolong) the lock.
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) throw std::runtime_error(std::string("cannot create the lock file (") + std::strerror(errno) + ")");
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      close(fd);
      if (err == EWOULDBLOCK) return -2;
      throw std::runtime_error(std::string("this file system refuses locks (") + std::strerror(err) + ")");
    }
    // Rewritten only once locked: a reader finds the holder or, for an instant, an empty file.
    const char* p = static_cast<const char*>(holder);
    bool ok = ftruncate(fd, 0) == 0;
    for (int64_t at = 0; ok && at < holder_len;) {
      const ssize_t n = pwrite(fd, p + at, static_cast<size_t>(holder_len - at), at);
      ok = n > 0;
      at += n > 0 ? n : 0;
    }
    if (!ok) {
      const int err = errno;
      close(fd);
      throw std::runtime_error(std::string("cannot write the lock file (") + std::strerror(err) + ")");
    }
    return fd;
  })
}

MDM_API void mdm_unlock_file(int32_t fd) {
  if (fd < 0) return;
  flock(fd, LOCK_UN);
  close(fd);
}
