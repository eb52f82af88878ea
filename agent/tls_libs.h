// Finds the OpenSSL libraries (libssl) that the node's processes map, so that the TLS plaintext
// probes can be attached to each file once. Files inside containers are reached through
// /proc/PID/root, so the agent needs no access to the containers' images.
#pragma once

#include <sys/types.h>

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace podtap {

// The path of a libssl mapping in one line of /proc/PID/maps, or "" when the line maps
// something else.
std::string LibsslPathInMapsLine(const std::string& line);

class TlsLibraryFinder {
 public:
  explicit TlsLibraryFinder(std::string proc = "/proc") : proc_(std::move(proc)) {}
  // Paths (under /proc/PID/root) of libssl files not returned before, one per file (device and
  // inode). Reads the maps of processes that are new or exec'd another program since the last
  // call; `all` reads every process's (a library loaded later with dlopen).
  std::vector<std::string> FindNew(bool all = false);

 private:
  std::string proc_;
  std::set<std::pair<dev_t, ino_t>> files_;
  std::map<pid_t, std::string> scanned_;  // pid -> its executable when its maps were read
};

}  // namespace podtap
