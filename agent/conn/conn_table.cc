// Bounded connection table.
#include "agent/conn/conn_table.h"

namespace podtap {

Conn* ConnTable::Insert(uint64_t conn_id, Conn conn) {
  auto it = conns_.find(conn_id);
  if (it != conns_.end()) {
    // A cookie is never reused, so this is the same socket seen again (for
    // example the address fallback id of the plain tracepoint): replace.
    it->second = std::move(conn);
    return &it->second;
  }
  if (conns_.size() >= max_) return nullptr;
  return &conns_.emplace(conn_id, std::move(conn)).first->second;
}

Conn* ConnTable::Find(uint64_t conn_id) {
  auto it = conns_.find(conn_id);
  return it == conns_.end() ? nullptr : &it->second;
}

}  // namespace podtap
