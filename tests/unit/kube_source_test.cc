// The list+watch reflector against a scripted transport: resourceVersions,
// bookmarks, broken streams, 410 Gone, oversize lines, backoff; and the
// status the self metrics show.
#include "agent/metadata/kube_source.h"

#include <gtest/gtest.h>

#include <deque>

namespace podtap {
namespace {

// One scripted answer: a whole body (Get) or lines then an ending (Stream).
struct Reply {
  long status = 200;
  std::string body;
  std::vector<std::string> lines;
  std::string error;  // transport error after the lines
  bool too_large = false;
};
Reply Body(long status, std::string body) {
  Reply r;
  r.status = status;
  r.body = std::move(body);
  return r;
}
Reply Lines(std::vector<std::string> lines, std::string error = "", bool too_large = false) {
  Reply r;
  r.lines = std::move(lines);
  r.error = std::move(error);
  r.too_large = too_large;
  return r;
}
Reply Unreachable() {
  Reply r;
  r.status = 0;
  r.error = "Couldn't connect to server";
  return r;
}

// Plays replies in order and records the paths asked; once the script is
// done it sets `stop` and fails every request.
class ScriptedTransport : public KubeTransport {
 public:
  ScriptedTransport(std::atomic<bool>* stop, std::deque<Reply> script)
      : stop_(stop), script_(std::move(script)) {}
  HttpResult Get(const std::string& path, size_t) override {
    paths.push_back("GET " + path);
    Reply r = Next();
    return {r.status, r.body, r.error, r.too_large};
  }
  HttpResult Stream(const std::string& path, size_t, const std::function<void()>& on_open,
                    const std::function<bool(std::string_view)>& on_line) override {
    paths.push_back("WATCH " + path);
    Reply r = Next();
    if (r.status == 200) on_open();
    for (const auto& line : r.lines) {
      if (!on_line(line)) return {r.status, "", "", false};
    }
    return {r.status, r.status == 200 ? "" : r.body, r.error, r.too_large};
  }
  std::vector<std::string> paths;

 private:
  Reply Next() {
    if (script_.empty()) {
      *stop_ = true;
      Reply done = Unreachable();
      done.error = "script done";
      return done;
    }
    Reply r = script_.front();
    script_.pop_front();
    return r;
  }
  std::atomic<bool>* stop_;
  std::deque<Reply> script_;
};

std::string Pod(const std::string& name, const std::string& rv, const std::string& ip) {
  return R"({"metadata":{"name":")" + name + R"(","namespace":"shop","uid":"u-)" + name +
         R"(","resourceVersion":")" + rv + R"("},"status":{"phase":"Running","podIP":")" + ip +
         R"("}})";
}
std::string List(const std::string& rv, const std::vector<std::string>& pods,
                 const std::string& cont = "") {
  std::string items;
  for (const auto& p : pods) items += (items.empty() ? "" : ",") + p;
  return R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":")" + rv +
         R"(","continue":")" + cont + R"("},"items":[)" + items + "]}";
}
std::string Event(const std::string& type, const std::string& object) {
  return R"({"type":")" + type + R"(","object":)" + object + "}";
}
std::string Bookmark(const std::string& rv) {
  return Event("BOOKMARK",
               R"({"kind":"Pod","apiVersion":"v1","metadata":{"resourceVersion":")" + rv + "\"}}");
}
const std::string kGoneEvent = Event("ERROR", R"j({"kind":"Status","apiVersion":"v1",
    "metadata":{},"status":"Failure","message":"too old resource version: 20 (30)",
    "reason":"Expired","code":410})j");

std::string WatchPath(const std::string& rv) {
  return "WATCH /api/v1/pods?watch=1&allowWatchBookmarks=true&resourceVersion=" + rv +
         "&timeoutSeconds=300";
}
const std::string kListPath = "GET /api/v1/pods?limit=500";

struct Run {
  KubeState state;
  std::vector<std::chrono::milliseconds> sleeps;
  std::vector<std::string> paths;
  std::set<std::string> pods;  // names in the cache at the end
};

std::unique_ptr<Run> RunScript(std::deque<Reply> script, KubeOptions opts = {}) {
  auto run = std::make_unique<Run>();
  std::atomic<bool> stop{false};
  ScriptedTransport t(&stop, std::move(script));
  KubeReflector(KubeResource::kPods, &t, opts, &run->state, &stop,
                [&](std::chrono::milliseconds d) { run->sleeps.push_back(d); })
      .Run();
  run->paths = t.paths;
  run->state.Read([&](const KubeCache& c) {
    for (const auto& [key, p] : c.pods) run->pods.insert(p.name);
  });
  return run;
}

TEST(KubeReflector, ListThenWatchFollowsResourceVersionsAndBookmarks) {
  auto run = RunScript({
      Body(200, List("10", {Pod("a", "9", "10.0.0.1"), Pod("b", "10", "10.0.0.2")})),
      Lines({Event("ADDED", Pod("c", "11", "10.0.0.3")),
             Event("DELETED", Pod("a", "12", "10.0.0.1")),
             Event("MODIFIED", Pod("b", "13", "10.0.0.9")), Bookmark("20")}),
      // The server's timeoutSeconds ended the watch: resume from the bookmark.
      Lines({Event("ADDED", Pod("d", "21", "10.0.0.4"))}),
  });
  EXPECT_EQ(run->paths, (std::vector<std::string>{kListPath, WatchPath("10"), WatchPath("20"),
                                                  WatchPath("21")}));
  EXPECT_EQ(run->pods, (std::set<std::string>{"b", "c", "d"}));
  run->state.Read([](const KubeCache& c) {
    EXPECT_EQ(c.pods.at("shop/b").ips, std::vector<IpAddr>{*IpAddr::Parse("10.0.0.9")});
  });
  MetadataSourceStatus st = run->state.Status();
  EXPECT_EQ(st.relists["pods"], 0u);
  EXPECT_EQ(st.watch_restarts["pods"], 2u);  // the two clean ends
  EXPECT_EQ(st.objects["pods"], 3u);
  EXPECT_TRUE(run->sleeps.empty());
}

TEST(KubeReflector, BrokenStreamResumesFromLastResourceVersionWithoutRelist) {
  auto run = RunScript({
      Body(200, List("10", {Pod("a", "9", "10.0.0.1")})),
      Lines({Event("ADDED", Pod("b", "11", "10.0.0.2"))}, "Recv failure: Connection reset"),
      Lines({Event("ADDED", Pod("c", "12", "10.0.0.3"))}),
  });
  EXPECT_EQ(run->paths, (std::vector<std::string>{kListPath, WatchPath("10"), WatchPath("11"),
                                                  WatchPath("12")}));
  EXPECT_EQ(run->pods, (std::set<std::string>{"a", "b", "c"}));
  MetadataSourceStatus st = run->state.Status();
  EXPECT_EQ(st.errors["stream_broken"], 1u);
  EXPECT_EQ(st.relists["pods"], 0u);
  EXPECT_EQ(st.watch_restarts["pods"], 2u);
}

TEST(KubeReflector, GoneEventAndHttp410Relist) {
  auto run = RunScript({
      Body(200, List("10", {Pod("a", "9", "10.0.0.1")})),
      Lines({Event("ADDED", Pod("b", "11", "10.0.0.2")), kGoneEvent}),
      // The fresh list replaces the cache: a and b are gone, x is new.
      Body(200, List("30", {Pod("x", "29", "10.0.0.8")})),
      Body(410, R"({"kind":"Status","code":410,"reason":"Expired"})"),
      Body(200, List("40", {Pod("x", "29", "10.0.0.8"), Pod("y", "40", "10.0.0.7")})),
  });
  EXPECT_EQ(run->paths, (std::vector<std::string>{kListPath, WatchPath("10"), kListPath,
                                                  WatchPath("30"), kListPath, WatchPath("40")}));
  EXPECT_EQ(run->pods, (std::set<std::string>{"x", "y"}));
  MetadataSourceStatus st = run->state.Status();
  EXPECT_EQ(st.errors["gone"], 2u);
  EXPECT_EQ(st.relists["pods"], 2u);
  // 410 is routine: re-listed at once, no backoff.
  EXPECT_TRUE(run->sleeps.empty());
}

TEST(KubeReflector, OversizeLineAndBadEventRelistAfterBackoff) {
  KubeOptions opts;
  auto run = RunScript(
      {
          Body(200, List("10", {})),
          Lines({}, "a watch event line exceeds 8388608 bytes", true),
          Body(200, List("11", {})),
          Lines({R"({"type":"ADDED","object":{"metadata":{"nam)"}),
          Body(200, List("12", {Pod("a", "12", "10.0.0.1")})),
      },
      opts);
  EXPECT_EQ(run->paths, (std::vector<std::string>{kListPath, WatchPath("10"), kListPath,
                                                  WatchPath("11"), kListPath, WatchPath("12")}));
  MetadataSourceStatus st = run->state.Status();
  EXPECT_EQ(st.errors["line_too_long"], 1u);
  EXPECT_EQ(st.errors["decode"], 1u);
  EXPECT_EQ(st.relists["pods"], 2u);
  ASSERT_GE(run->sleeps.size(), 2u);
  EXPECT_EQ(run->pods, (std::set<std::string>{"a"}));
}

TEST(KubeReflector, ExponentialBackoffWithCapAndReset) {
  KubeOptions opts;
  opts.backoff_initial = std::chrono::milliseconds(100);
  opts.backoff_max = std::chrono::milliseconds(1000);
  std::deque<Reply> script;
  for (int i = 0; i < 6; i++) script.push_back(Unreachable());
  script.push_back(Body(503, "overloaded"));
  script.push_back(Body(200, List("10", {})));
  script.push_back(Unreachable());  // the watch
  auto run = RunScript(script, opts);
  // 100, 200, 400, 800, 1000 (cap), 1000, 1000 (the 503), then the list
  // succeeds and resets: the failed watch waits 100 again.
  const int64_t want[] = {100, 200, 400, 800, 1000, 1000, 1000, 100};
  ASSERT_GE(run->sleeps.size(), 8u);
  for (size_t i = 0; i < 8; i++) {
    EXPECT_GE(run->sleeps[i].count(), want[i] * 8 / 10) << i;
    EXPECT_LE(run->sleeps[i].count(), want[i] * 12 / 10) << i;
  }
  MetadataSourceStatus st = run->state.Status();
  // 6 lists and the watch; the script's end stops the reflector, which is
  // no error.
  EXPECT_EQ(st.errors["connect"], 7u);
  EXPECT_EQ(st.errors["http_status"], 1u);
  EXPECT_FALSE(st.up);
}

TEST(KubeReflector, PaginatedListFollowsContinue) {
  auto run = RunScript({
      Body(200, List("10", {Pod("a", "9", "10.0.0.1")}, "tok+/=")),
      Body(200, List("10", {Pod("b", "10", "10.0.0.2")})),
      Lines({}),
  });
  EXPECT_EQ(run->paths, (std::vector<std::string>{kListPath, kListPath + "&continue=tok%2B%2F%3D",
                                                  WatchPath("10"), WatchPath("10")}));
  EXPECT_EQ(run->pods, (std::set<std::string>{"a", "b"}));
}

TEST(KubeState, UpOnlyWhenEveryResourceIsWatched) {
  KubeState s;
  EXPECT_FALSE(s.Status().up);
  for (size_t i = 0; i < kKubeResourceCount; i++) {
    s.SetUp(static_cast<KubeResource>(i), true, "watching");
  }
  EXPECT_TRUE(s.Status().up);
  s.CountError(KubeResource::kServices, "connect", "Couldn't connect to server");
  EXPECT_FALSE(s.Status().up);
  EXPECT_NE(s.Detail().find("services: connect: Couldn't connect to server (0 objects)"),
            std::string::npos)
      << s.Detail();
}

}  // namespace
}  // namespace podtap
