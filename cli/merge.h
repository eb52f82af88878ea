// One answer from the answers of several agents: counters summed, latency
// histograms added (percentiles from the sum, never averaged), edges and
// connections unioned, rows ranked and cut as one agent would.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "query.pb.h"

namespace podtap {

// A histogram's buckets and counts as received; false (with `error` set) for
// a malformed one.
bool CheckHistogram(const v1::LatencyHistogram& h, std::string* error);

// Each input must have passed CheckValid. Rows are keyed by everything that
// names them (resource and direction; direction, method and key; source and
// destination), so a pod's rows from its node's agent, or a workload's rows
// from every node running it, become one.
v1::StatResponse MergeStat(const std::vector<v1::StatResponse>& in);
// `sort` ("requests" or "failures") and `limit` rank the merged rows as the
// agent does; the inputs must hold every row (asked with a limit past their
// count), or a kind past one agent's limit would be missing from the sum.
v1::TopResponse MergeTop(const std::vector<v1::TopResponse>& in, const std::string& sort,
                         uint32_t limit);
// An edge whose client-side view any agent has is counted from those views
// only (the client's node saw it whole); otherwise from its server-side views.
v1::EdgesResponse MergeEdges(const std::vector<v1::EdgesResponse>& in);
// Oldest first, cut to `limit`; `total` summed.
v1::ConnsResponse MergeConns(const std::vector<v1::ConnsResponse>& in, uint32_t limit);

// Whether every histogram in an answer is well formed; the first problem in
// `error` otherwise.
bool CheckValid(const v1::StatResponse& r, std::string* error);
bool CheckValid(const v1::TopResponse& r, std::string* error);
bool CheckValid(const v1::EdgesResponse& r, std::string* error);
// Connections carry no histogram: always true.
bool CheckValid(const v1::ConnsResponse& r, std::string* error);

}  // namespace podtap
