// Every metric family podtap exposes, declared once: name, type, help, unit and the label
// names its samples add; components build their families from these and nothing else.
#pragma once

#include <array>
#include <span>
#include <string_view>

#include "agent/metrics/snapshot.h"

namespace podtap {

// Label names samples add, beyond the pod labels of their series' label set (pod_labels.h).
// Character arrays rather than string_views: Labels holds std::string pairs, which a
// string_view cannot initialise implicitly.
inline constexpr char kLabelDirection[] = "direction";
inline constexpr char kLabelPeer[] = "peer";
inline constexpr char kLabelTls[] = "tls";
inline constexpr char kLabelClassification[] = "classification";
inline constexpr char kLabelErrno[] = "errno";
inline constexpr char kLabelError[] = "error";
inline constexpr char kLabelAuthority[] = "authority";
inline constexpr char kLabelStatusCode[] = "status_code";
inline constexpr char kLabelGrpcStatusCode[] = "grpc_status_code";
inline constexpr char kLabelDst[] = "dst";
inline constexpr char kLabelRoute[] = "rt_route";
// The label set of the series past a group's cap (AggregatorOptions::max_series_per_family),
// in place of pod labels.
inline constexpr char kLabelOverflow[] = "podtap_overflow";
// The agent's own series.
inline constexpr char kLabelFamily[] = "family";
inline constexpr char kLabelReason[] = "reason";
inline constexpr char kLabelKind[] = "kind";
inline constexpr char kLabelProtocol[] = "protocol";
inline constexpr char kLabelState[] = "state";
inline constexpr char kLabelSource[] = "source";
inline constexpr char kLabelResource[] = "resource";
inline constexpr char kLabelResult[] = "result";
inline constexpr char kLabelVersion[] = "version";
inline constexpr char kLabelProbeMode[] = "probe_mode";
inline constexpr char kLabelPayloadProbes[] = "payload_probes";
inline constexpr char kLabelSyscallHook[] = "syscall_hook";
inline constexpr char kLabelFeature[] = "feature";
inline constexpr char kLabelEndpoint[] = "endpoint";

struct FamilyDef {
  std::string_view name;  // as exposed, e.g. "tcp_open_total"
  MetricType type;
  std::string_view help;
  // OpenMetrics unit, empty when none applies (MetricFamily::unit).
  std::string_view unit;
  // The label names its samples add, in the order they add them.
  std::span<const std::string_view> labels = {};
};

// A family with no samples yet.
MetricFamily NewFamily(const FamilyDef& def);

namespace family_labels {

// The label lists families share. A TCP series' label set ends with the authority of a
// connection to a Service (TcpPipeline), as Linkerd's tcp_* series have it.
inline constexpr std::string_view kTcp[] = {kLabelDirection, kLabelPeer, kLabelTls,
                                            kLabelAuthority};
inline constexpr std::string_view kTcpClose[] = {
    kLabelDirection, kLabelPeer, kLabelTls, kLabelAuthority, kLabelClassification, kLabelErrno};
inline constexpr std::string_view kTcpErrors[] = {kLabelDirection, kLabelTls, kLabelAuthority,
                                                  kLabelError};
inline constexpr std::string_view kHttpRequests[] = {kLabelDirection, kLabelAuthority, kLabelTls};
inline constexpr std::string_view kHttpResponses[] = {
    kLabelDirection,  kLabelAuthority,      kLabelTls,
    kLabelStatusCode, kLabelClassification, kLabelGrpcStatusCode};
inline constexpr std::string_view kHttpLatency[] = {kLabelDirection, kLabelAuthority, kLabelTls,
                                                    kLabelStatusCode};
inline constexpr std::string_view kRouteRequests[] = {kLabelDirection, kLabelDst, kLabelRoute};
inline constexpr std::string_view kRouteResponses[] = {kLabelDirection,      kLabelDst,
                                                       kLabelRoute,          kLabelStatusCode,
                                                       kLabelClassification, kLabelGrpcStatusCode};
inline constexpr std::string_view kRouteLatency[] = {kLabelDirection, kLabelDst, kLabelRoute,
                                                     kLabelStatusCode};
inline constexpr std::string_view kFamily[] = {kLabelFamily};
inline constexpr std::string_view kReason[] = {kLabelReason};
inline constexpr std::string_view kKind[] = {kLabelKind};
inline constexpr std::string_view kProtocol[] = {kLabelProtocol};
inline constexpr std::string_view kProtocolError[] = {kLabelProtocol, kLabelError};
inline constexpr std::string_view kState[] = {kLabelState};
inline constexpr std::string_view kSource[] = {kLabelSource};
inline constexpr std::string_view kSourceReason[] = {kLabelSource, kLabelReason};
inline constexpr std::string_view kSourceResource[] = {kLabelSource, kLabelResource};
inline constexpr std::string_view kResult[] = {kLabelResult};
inline constexpr std::string_view kBuildInfo[] = {kLabelVersion, kLabelProbeMode,
                                                  kLabelPayloadProbes, kLabelSyscallHook};
inline constexpr std::string_view kFeatureState[] = {kLabelFeature, kLabelState};
inline constexpr std::string_view kEndpoint[] = {kLabelEndpoint};

}  // namespace family_labels

// Linkerd's proxy metrics (METRICS.md): names, types and label names as the proxy has them.
namespace linkerd {

inline constexpr FamilyDef kTcpOpenTotal = {"tcp_open_total", MetricType::kCounter,
                                            "Total count of opened connections.", "",
                                            family_labels::kTcp};
inline constexpr FamilyDef kTcpCloseTotal = {"tcp_close_total", MetricType::kCounter,
                                             "Total count of closed connections.", "",
                                             family_labels::kTcpClose};
inline constexpr FamilyDef kTcpOpenConnections = {"tcp_open_connections", MetricType::kGauge,
                                                  "Number of currently-open connections.", "",
                                                  family_labels::kTcp};
inline constexpr FamilyDef kTcpReadBytesTotal = {
    "tcp_read_bytes_total", MetricType::kCounter,
    "Total count of payload bytes read from peers (live and closed connections).", "bytes",
    family_labels::kTcp};
inline constexpr FamilyDef kTcpWriteBytesTotal = {
    "tcp_write_bytes_total", MetricType::kCounter,
    "Total count of payload bytes written to peers (live and closed connections).", "bytes",
    family_labels::kTcp};
inline constexpr FamilyDef kTcpConnectionDurationMs = {
    "tcp_connection_duration_ms", MetricType::kHistogram, "Connection lifetimes in milliseconds.",
    "ms", family_labels::kTcpClose};
inline constexpr FamilyDef kOutboundTcpErrorsTotal = {
    "outbound_tcp_errors_total", MetricType::kCounter,
    "Total count of outbound TCP connection failures.", "", family_labels::kTcpErrors};
inline constexpr FamilyDef kInboundTcpErrorsTotal = {
    "inbound_tcp_errors_total", MetricType::kCounter,
    "Total count of inbound TCP connection failures.", "", family_labels::kTcpErrors};
inline constexpr FamilyDef kRequestTotal = {"request_total", MetricType::kCounter,
                                            "Total count of HTTP requests.", "",
                                            family_labels::kHttpRequests};
inline constexpr FamilyDef kResponseTotal = {"response_total", MetricType::kCounter,
                                             "Total count of HTTP responses.", "",
                                             family_labels::kHttpResponses};
inline constexpr FamilyDef kResponseLatencyMs = {
    "response_latency_ms", MetricType::kHistogram,
    "Elapsed times between a request's headers and the first byte of its response, in "
    "milliseconds.",
    "ms", family_labels::kHttpLatency};
inline constexpr FamilyDef kRouteRequestTotal = {"route_request_total", MetricType::kCounter,
                                                 "Total count of HTTP requests, per route.", "",
                                                 family_labels::kRouteRequests};
inline constexpr FamilyDef kRouteResponseTotal = {"route_response_total", MetricType::kCounter,
                                                  "Total count of HTTP responses, per route.", "",
                                                  family_labels::kRouteResponses};
inline constexpr FamilyDef kRouteResponseLatencyMs = {
    "route_response_latency_ms", MetricType::kHistogram,
    "Elapsed times between a request's headers and the first byte of its response, in "
    "milliseconds, per route.",
    "ms", family_labels::kRouteLatency};

// The group, for checks over every declared family.
inline constexpr std::array kAll = {
    &kTcpOpenTotal,           &kTcpCloseTotal,         &kTcpOpenConnections,
    &kTcpReadBytesTotal,      &kTcpWriteBytesTotal,    &kTcpConnectionDurationMs,
    &kOutboundTcpErrorsTotal, &kInboundTcpErrorsTotal, &kRequestTotal,
    &kResponseTotal,          &kResponseLatencyMs,     &kRouteRequestTotal,
    &kRouteResponseTotal,     &kRouteResponseLatencyMs};

}  // namespace linkerd

// The agent's own health (METRICS.md, "Self metrics"), by the component that counts it.
namespace self_metrics {

// The aggregator's.
inline constexpr FamilyDef kSeries = {"podtap_series", MetricType::kGauge,
                                      "Series held per exposed metric family.", "",
                                      family_labels::kFamily};
inline constexpr FamilyDef kLabelSets = {
    "podtap_label_sets", MetricType::kGauge,
    "Label sets interned now (pod and peer labels of series and open connections); those of "
    "pods that are gone are freed with their last series and connection.",
    ""};
inline constexpr FamilyDef kSeriesDroppedTotal = {
    "podtap_series_dropped_total", MetricType::kCounter,
    "Lookups of a new label set that found its series group at the --max-series-per-family cap "
    "and were counted in the group's overflow series (podtap_overflow=\"true\") instead, by "
    "group (tcp, http, route).",
    "", family_labels::kFamily};
inline constexpr FamilyDef kEventsLostTotal = {
    "podtap_events_lost_total", MetricType::kCounter,
    "Events the kernel could not hand to the agent, by reason.", "", family_labels::kReason};
inline constexpr FamilyDef kEventsRecoveredTotal = {
    "podtap_events_recovered_total", MetricType::kCounter,
    "Lifecycle events the ring buffer had no room for (counted in "
    "podtap_events_lost_total{reason=\"ringbuf_full\"}) that were applied anyway, by kind: "
    "opens rebuilt at close from the kernel's socket map, closes and failed connects from its "
    "pending closes map.",
    "", family_labels::kKind};
inline constexpr FamilyDef kPayloadEventsTotal = {
    "podtap_payload_events_total", MetricType::kCounter,
    "Socket data records applied to the protocol parsers.", ""};
inline constexpr FamilyDef kParseErrorsTotal = {
    "podtap_parse_errors_total", MetricType::kCounter,
    "Protocol parse problems, by protocol and kind (resyncs included).", "",
    family_labels::kProtocolError};
inline constexpr FamilyDef kConnectionsGivenUpTotal = {
    "podtap_connections_given_up_total", MetricType::kCounter,
    "Connections whose payload is no longer parsed (not the protocol, upgraded, or lost), by "
    "protocol.",
    "", family_labels::kProtocol};
inline constexpr FamilyDef kHttpRequestsUnansweredTotal = {
    "podtap_http_requests_unanswered_total", MetricType::kCounter,
    "Requests counted in request_total whose response will never be counted: the parser gave "
    "up on their connection, or the agent shed it (podtap_http_shed_connections_total), while "
    "they waited.",
    "", family_labels::kProtocol};
inline constexpr FamilyDef kCpuBudgetCores = {
    "podtap_cpu_budget_cores", MetricType::kGauge,
    "The agent's CPU budget (--max-cpu) in cores; 0: no budget.", ""};
inline constexpr FamilyDef kHttpShedConnectionsTotal = {
    "podtap_http_shed_connections_total", MetricType::kCounter,
    "Connections whose HTTP capture the agent stopped to stay within its CPU budget (their TCP "
    "series stay exact; their later exchanges are not counted).",
    ""};
inline constexpr FamilyDef kHttpShedRecordsTotal = {
    "podtap_http_shed_records_total", MetricType::kCounter,
    "Socket data records of shed connections that were already on their way from the kernel, "
    "dropped unparsed.",
    ""};
inline constexpr FamilyDef kConnectionsUntrackedTotal = {
    "podtap_connections_untracked_total", MetricType::kCounter,
    "Connections not counted, by reason: the connection table was full, or the socket was "
    "opened before the probes were attached.",
    "", family_labels::kReason};
inline constexpr FamilyDef kConnectionsAdoptedTotal = {
    "podtap_connections_adopted_total", MetricType::kCounter,
    "Connections already open when the agent started, found through the kernel's socket "
    "diagnostics and tracked from then on.",
    ""};
inline constexpr FamilyDef kKernelSocketMapFullTotal = {
    "podtap_kernel_socket_map_full_total", MetricType::kCounter,
    "Opens the kernel could not remember because its socket map was full (the agent's own "
    "table still counts them if their open event arrived).",
    ""};
inline constexpr FamilyDef kTlsLibraries = {
    "podtap_tls_libraries", MetricType::kGauge,
    "Executable files (libraries and programs) the node's processes map: those with the "
    "OpenSSL API by whether the TLS plaintext probes are attached to them, Go programs with "
    "crypto/tls the Go TLS probes are attached to (go), the other files, of those the Go "
    "programs with crypto/tls not covered (not decrypted), and failed tries to read one.",
    "", family_labels::kState};
inline constexpr FamilyDef kConnectionsTracked = {"podtap_connections_tracked", MetricType::kGauge,
                                                  "Open connections the agent tracks now.", ""};
inline constexpr FamilyDef kConnectionsMax = {
    "podtap_connections_max", MetricType::kGauge,
    "The most connections the agent tracks at once (--max-connections, or sized from "
    "--memory-limit); past it they are refused and counted.",
    ""};
inline constexpr FamilyDef kMetadataPods = {"podtap_metadata_pods", MetricType::kGauge,
                                            "Pods known to the metadata source.", ""};
inline constexpr FamilyDef kMetadataSourceUp = {
    "podtap_metadata_source_up", MetricType::kGauge,
    "1 when the metadata source's last read succeeded (kubernetes: every resource listed and "
    "its watch running), by source.",
    "", family_labels::kSource};
inline constexpr FamilyDef kMetadataErrorsTotal = {
    "podtap_metadata_errors_total", MetricType::kCounter,
    "Failed reads of a pod metadata source, by source and reason (the last good data is "
    "kept).",
    "", family_labels::kSourceReason};
inline constexpr FamilyDef kMetadataRelistsTotal = {
    "podtap_metadata_relists_total", MetricType::kCounter,
    "Lists of a Kubernetes resource after its first (410 Gone, decode errors), by source and "
    "resource.",
    "", family_labels::kSourceResource};
inline constexpr FamilyDef kMetadataWatchRestartsTotal = {
    "podtap_metadata_watch_restarts_total", MetricType::kCounter,
    "Watches resumed from their last resourceVersion (the stream ended or broke), by source and "
    "resource.",
    "", family_labels::kSourceResource};
inline constexpr FamilyDef kMetadataObjects = {
    "podtap_metadata_objects", MetricType::kGauge,
    "Objects held from a metadata source, by source and resource.", "",
    family_labels::kSourceResource};
inline constexpr FamilyDef kMetadataLastSuccessTimestampSeconds = {
    "podtap_metadata_last_success_timestamp_seconds", MetricType::kGauge,
    "Unix time of the last successful read of the pod metadata source.", "seconds"};
inline constexpr FamilyDef kConfigReloadsTotal = {
    "podtap_config_reloads_total", MetricType::kCounter,
    "SIGHUP re-reads of --config, by result (error: the previous config stays).", "",
    family_labels::kResult};
inline constexpr FamilyDef kBuildInfo = {"podtap_build_info", MetricType::kGauge,
                                         "podtap version and the probe set attached.", "",
                                         family_labels::kBuildInfo};
inline constexpr FamilyDef kKernelFeature = {
    "podtap_kernel_feature", MetricType::kGauge,
    "Kernel features the probe loader checked at start (1 per feature, state available or "
    "missing); podtap_build_info names the builds they chose.",
    "", family_labels::kFeatureState};

// The query service's (query_recorder.h).
inline constexpr FamilyDef kTapEventsDroppedTotal = {
    "podtap_tap_events_dropped_total", MetricType::kCounter,
    "Requests a live tap matched but did not send, by reason: rate_limited (past the tap's "
    "rate), queue_full (its client read too slowly).",
    "", family_labels::kReason};
inline constexpr FamilyDef kTapStreams = {"podtap_tap_streams", MetricType::kGauge,
                                          "Live taps open now.", ""};
inline constexpr FamilyDef kQueryTopDroppedTotal = {
    "podtap_query_top_dropped_total", MetricType::kCounter,
    "Requests left out of the query service's Top because a 5 s bucket already held its most "
    "distinct request kinds (Stat still counts them).",
    ""};
inline constexpr FamilyDef kQueryEndpointPairs = {
    "podtap_query_endpoint_pairs", MetricType::kGauge,
    "(local, remote) endpoint pairs the query service holds now for open connections and the "
    "traffic in its window (up to 12 minutes back).",
    ""};

// The metrics server's (exporter/http_server.h).
inline constexpr FamilyDef kScrapesTotal = {"podtap_scrapes_total", MetricType::kCounter,
                                            "Requests answered, by metrics endpoint.", "",
                                            family_labels::kEndpoint};
inline constexpr FamilyDef kScrapeDurationSeconds = {
    "podtap_scrape_duration_seconds", MetricType::kGauge,
    "Time the previous request of each metrics endpoint took to build its body (snapshot, "
    "serialisation and compression).",
    "seconds", family_labels::kEndpoint};
inline constexpr FamilyDef kScrapeSizeBytes = {
    "podtap_scrape_size_bytes", MetricType::kGauge,
    "Body size of the previous response of each metrics endpoint, as sent (after "
    "compression).",
    "bytes", family_labels::kEndpoint};
inline constexpr FamilyDef kHttpConnections = {
    "podtap_http_connections", MetricType::kGauge,
    "Connections to the metrics server open now, in every state.", ""};
inline constexpr FamilyDef kHttpConnectionsDroppedTotal = {
    "podtap_http_connections_dropped_total", MetricType::kCounter,
    "Connections to the metrics server closed or refused without an answer to their request, "
    "or answered 400/431, by reason.",
    "", family_labels::kReason};

// The group, for checks over every declared family.
inline constexpr std::array kAll = {&kSeries,
                                    &kLabelSets,
                                    &kSeriesDroppedTotal,
                                    &kEventsLostTotal,
                                    &kEventsRecoveredTotal,
                                    &kPayloadEventsTotal,
                                    &kParseErrorsTotal,
                                    &kConnectionsGivenUpTotal,
                                    &kHttpRequestsUnansweredTotal,
                                    &kCpuBudgetCores,
                                    &kHttpShedConnectionsTotal,
                                    &kHttpShedRecordsTotal,
                                    &kConnectionsUntrackedTotal,
                                    &kConnectionsAdoptedTotal,
                                    &kKernelSocketMapFullTotal,
                                    &kTlsLibraries,
                                    &kConnectionsTracked,
                                    &kConnectionsMax,
                                    &kMetadataPods,
                                    &kMetadataSourceUp,
                                    &kMetadataErrorsTotal,
                                    &kMetadataRelistsTotal,
                                    &kMetadataWatchRestartsTotal,
                                    &kMetadataObjects,
                                    &kMetadataLastSuccessTimestampSeconds,
                                    &kConfigReloadsTotal,
                                    &kBuildInfo,
                                    &kKernelFeature,
                                    &kTapEventsDroppedTotal,
                                    &kTapStreams,
                                    &kQueryTopDroppedTotal,
                                    &kQueryEndpointPairs,
                                    &kScrapesTotal,
                                    &kScrapeDurationSeconds,
                                    &kScrapeSizeBytes,
                                    &kHttpConnections,
                                    &kHttpConnectionsDroppedTotal};

}  // namespace self_metrics

// The process_* families Prometheus' client libraries export, named and typed as they are
// (exporter/process_metrics.h).
namespace process_metrics {

inline constexpr FamilyDef kCpuSecondsTotal = {"process_cpu_seconds_total", MetricType::kCounter,
                                               "Total user and system CPU time spent in seconds.",
                                               "seconds"};
inline constexpr FamilyDef kResidentMemoryBytes = {
    "process_resident_memory_bytes", MetricType::kGauge, "Resident memory size in bytes.", "bytes"};
inline constexpr FamilyDef kVirtualMemoryBytes = {
    "process_virtual_memory_bytes", MetricType::kGauge, "Virtual memory size in bytes.", "bytes"};
inline constexpr FamilyDef kStartTimeSeconds = {
    "process_start_time_seconds", MetricType::kGauge,
    "Start time of the process since unix epoch in seconds.", "seconds"};
inline constexpr FamilyDef kOpenFds = {"process_open_fds", MetricType::kGauge,
                                       "Number of open file descriptors.", ""};
inline constexpr FamilyDef kMaxFds = {"process_max_fds", MetricType::kGauge,
                                      "Maximum number of open file descriptors.", ""};

// The group, for checks over every declared family.
inline constexpr std::array kAll = {
    &kCpuSecondsTotal, &kResidentMemoryBytes, &kVirtualMemoryBytes, &kStartTimeSeconds, &kOpenFds,
    &kMaxFds};

}  // namespace process_metrics

}  // namespace podtap
