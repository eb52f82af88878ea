// Parses and applies Prometheus series selectors.
#include "exporter/selector.h"

#include <cctype>

namespace podtap {

bool LabelMatcher::Matches(std::string_view v) const {
  switch (op) {
    case Op::kEqual:
      return v == value;
    case Op::kNotEqual:
      return v != value;
    case Op::kRegex:
      return re2::RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *re);
    case Op::kNotRegex:
      return !re2::RE2::FullMatch(re2::StringPiece(v.data(), v.size()), *re);
  }
  return false;  // unreachable; GCC does not treat the switch as exhaustive
}

bool Selector::Matches(std::string_view metric_name, const Labels& labels) const {
  for (const LabelMatcher& m : matchers) {
    std::string_view v;
    if (m.name == "__name__") {
      v = metric_name;
    } else {
      for (const auto& [name, value] : labels) {
        if (name == m.name) {
          v = value;
          break;
        }
      }
    }
    if (!m.Matches(v)) return false;
  }
  return true;
}

namespace {

class Parser {
 public:
  Parser(std::string_view text, std::string* error) : text_(text), error_(error) {}

  std::optional<Selector> Parse() {
    Selector sel;
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] != '{') {
      std::string name = Identifier(true);
      if (name.empty()) return Fail("expected a metric name or '{'");
      LabelMatcher m;
      m.name = "__name__";
      m.value = std::move(name);
      sel.matchers.push_back(std::move(m));
      SkipSpace();
    }
    if (pos_ < text_.size() && text_[pos_] == '{') {
      pos_++;
      for (;;) {
        SkipSpace();
        if (Peek('}')) break;
        LabelMatcher m;
        m.name = Identifier(false);
        if (m.name.empty()) return Fail("expected a label name");
        SkipSpace();
        if (text_.substr(pos_, 2) == "=~") {
          m.op = LabelMatcher::Op::kRegex, pos_ += 2;
        } else if (text_.substr(pos_, 2) == "!~") {
          m.op = LabelMatcher::Op::kNotRegex, pos_ += 2;
        } else if (text_.substr(pos_, 2) == "!=") {
          m.op = LabelMatcher::Op::kNotEqual, pos_ += 2;
        } else if (Peek('=')) {
          m.op = LabelMatcher::Op::kEqual;
        } else {
          return Fail("expected one of = != =~ !~");
        }
        SkipSpace();
        auto value = Quoted();
        if (!value) return std::nullopt;
        m.value = std::move(*value);
        if (m.op == LabelMatcher::Op::kRegex || m.op == LabelMatcher::Op::kNotRegex) {
          re2::RE2::Options options;
          options.set_log_errors(false);
          // A bound on the compiled program: a pattern past it is an error,
          // not memory taken from the agent.
          options.set_max_mem(1 << 20);
          auto re = std::make_shared<const re2::RE2>(m.value, options);
          if (!re->ok()) {
            return Fail("bad regular expression \"" + m.value + "\": " + re->error());
          }
          m.re = std::move(re);
        }
        sel.matchers.push_back(std::move(m));
        SkipSpace();
        if (Peek(',')) continue;
        if (Peek('}')) break;
        return Fail("expected ',' or '}'");
      }
    }
    SkipSpace();
    if (pos_ != text_.size()) return Fail("unexpected text");
    if (sel.matchers.empty()) return Fail("empty selector");
    return sel;
  }

 private:
  std::optional<Selector> Fail(const std::string& what) {
    *error_ = what + " at offset " + std::to_string(pos_) + " of \"" + std::string(text_) + "\"";
    return std::nullopt;
  }

  void SkipSpace() {
    while (pos_ < text_.size() && std::isspace(static_cast<unsigned char>(text_[pos_]))) pos_++;
  }

  bool Peek(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      pos_++;
      return true;
    }
    return false;
  }

  // [a-zA-Z_][a-zA-Z0-9_]*, metric names also with ':'.
  std::string Identifier(bool metric) {
    const size_t start = pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      const bool alpha =
          std::isalpha(static_cast<unsigned char>(c)) || c == '_' || (metric && c == ':');
      const bool digit = std::isdigit(static_cast<unsigned char>(c)) != 0;
      if (!(alpha || (digit && pos_ > start))) break;
      pos_++;
    }
    return std::string(text_.substr(start, pos_ - start));
  }

  std::optional<std::string> Quoted() {
    if (pos_ >= text_.size() || (text_[pos_] != '"' && text_[pos_] != '\'' && text_[pos_] != '`')) {
      Fail("expected a quoted value");
      return std::nullopt;
    }
    const char quote = text_[pos_++];
    std::string out;
    while (pos_ < text_.size()) {
      char c = text_[pos_++];
      if (c == quote) return out;
      if (c == '\\' && quote != '`' && pos_ < text_.size()) {
        c = text_[pos_++];
        switch (c) {
          case 'n':
            out += '\n';
            break;
          case 't':
            out += '\t';
            break;
          default:
            out += c;  // \\ \" \' and, for regexes, anything else taken as written
            if (c != '\\' && c != '"' && c != '\'') out.insert(out.size() - 1, 1, '\\');
        }
        continue;
      }
      out += c;
    }
    Fail("unterminated quoted value");
    return std::nullopt;
  }

  std::string_view text_;
  std::string* error_;
  size_t pos_ = 0;
};

}  // namespace

std::optional<Selector> ParseSelector(std::string_view text, std::string* error) {
  return Parser(text, error).Parse();
}

Snapshot SelectSeries(const Snapshot& snapshot, const std::vector<Selector>& selectors) {
  Snapshot out;
  for (const MetricFamily& family : snapshot.families) {
    std::vector<std::string> names = {family.name};
    if (family.type == MetricType::kHistogram) {
      for (const char* suffix : {"_bucket", "_sum", "_count"})
        names.push_back(family.name + suffix);
    } else if (family.type == MetricType::kCounter && !family.name.ends_with("_total")) {
      names.push_back(family.name + "_total");
    }
    MetricFamily kept;
    for (const Sample& sample : family.samples) {
      bool match = false;
      for (const Selector& sel : selectors) {
        for (const std::string& name : names) match = match || sel.Matches(name, sample.labels);
        if (match) break;
      }
      if (match) kept.samples.push_back(sample);
    }
    if (kept.samples.empty()) continue;
    kept.name = family.name;
    kept.help = family.help;
    kept.unit = family.unit;
    kept.type = family.type;
    out.families.push_back(std::move(kept));
  }
  return out;
}

}  // namespace podtap
