#include "agent/tls_libs.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>

namespace podtap {

std::string LibsslPathInMapsLine(const std::string& line) {
  // address perms offset dev inode pathname: the path is the first field starting with '/'.
  const size_t slash = line.find('/');
  if (slash == std::string::npos) return "";
  std::string path = line.substr(slash);
  if (path.size() > 10 && path.compare(path.size() - 10, 10, " (deleted)") == 0) return "";
  const size_t base = path.rfind('/');
  return path.compare(base, 8, "/libssl.") == 0 ? path : "";
}

std::vector<std::string> TlsLibraryFinder::FindNew(bool all) {
  std::vector<std::string> found;
  DIR* dir = opendir(proc_.c_str());
  if (dir == nullptr) return found;
  std::map<pid_t, std::string> alive;
  while (dirent* d = readdir(dir)) {
    char* end = nullptr;
    const long pid = std::strtol(d->d_name, &end, 10);
    if (end == d->d_name || *end != '\0' || pid <= 0) continue;
    const std::string base = proc_ + "/" + d->d_name;
    // A process read between fork and exec showed its parent's mappings: read it again once its
    // executable changes.
    char exe[4096];
    const ssize_t n = readlink((base + "/exe").c_str(), exe, sizeof(exe));
    std::string& seen = alive[static_cast<pid_t>(pid)];
    seen.assign(exe, n > 0 ? static_cast<size_t>(n) : 0);
    auto prev = scanned_.find(static_cast<pid_t>(pid));
    if (!all && prev != scanned_.end() && prev->second == seen) continue;
    std::ifstream maps(base + "/maps");
    std::string line;
    std::set<std::string> paths;
    while (std::getline(maps, line)) {
      std::string p = LibsslPathInMapsLine(line);
      if (!p.empty()) paths.insert(p);
    }
    for (const std::string& p : paths) {
      const std::string path = base + "/root" + p;
      struct stat st {};
      if (stat(path.c_str(), &st) != 0) continue;
      if (files_.insert({st.st_dev, st.st_ino}).second) found.push_back(path);
    }
  }
  closedir(dir);
  // Forget processes that exited, so that a reused pid is read again.
  scanned_ = std::move(alive);
  return found;
}

}  // namespace podtap
