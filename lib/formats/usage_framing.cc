#include "formats/usage_framing.h"

#include <cassert>

namespace sluice {
inline namespace v1 {
namespace internal {
namespace {

constexpr std::string_view kBom = "\xEF\xBB\xBF";
// Room for a field name beside the data a line may carry ("data: " and a little more).
constexpr size_t kLineSlack = 64;
// An event type longer than this is cut: none that carries usage is half as long.
constexpr size_t kMaxTypeBytes = 64;

}  // namespace

UsageFramer::UsageFramer(size_t max_event_bytes) : max_event_bytes_(max_event_bytes) {
  assert(max_event_bytes > 0);
}

void UsageFramer::Feed(std::string_view bytes, UsageEventSink& sink) {
  // A leading BOM, possibly split across chunks. A partial BOM followed by something else is
  // dropped: it could only have been the start of a line no field name matches.
  while (at_start_ && bom_matched_ < kBom.size() && !bytes.empty() &&
         bytes.front() == kBom[bom_matched_]) {
    bytes.remove_prefix(1);
    ++bom_matched_;
  }
  if (bytes.empty()) return;
  at_start_ = false;
  if (mode_ == Mode::kUnknown) {
    // The first byte other than white space tells: an SSE stream starts with a field name or a
    // comment, never with '{' or '['. White space before it is read as SSE (blank lines
    // dispatch nothing) and forgotten if the body turns out to be JSON.
    const size_t first = bytes.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) {
      FeedSse(bytes, sink);
      return;
    }
    if (bytes[first] == '{' || bytes[first] == '[') {
      mode_ = Mode::kJson;
      line_.clear();
      line_truncated_ = false;
      after_cr_ = false;
      bytes.remove_prefix(first);
    } else {
      mode_ = Mode::kSse;
    }
  }
  if (mode_ == Mode::kJson) {
    FeedJson(bytes, sink);
  } else {
    FeedSse(bytes, sink);
  }
}

void UsageFramer::Finish(UsageEventSink& sink) {
  if (mode_ == Mode::kJson) {
    if (in_record_) EndRecord({}, sink);
    return;
  }
  if (!line_.empty() || line_truncated_) {
    ProcessLine(line_, sink);
    line_.clear();
    line_truncated_ = false;
  }
  ProcessLine({}, sink);  // as if the blank line that ends the event had come
}

// ---- SSE ------------------------------------------------------------------------------------

void UsageFramer::FeedSse(std::string_view bytes, UsageEventSink& sink) {
  size_t pos = 0;
  const size_t n = bytes.size();
  if (after_cr_ && n > 0) {
    after_cr_ = false;
    if (bytes[0] == '\n') pos = 1;  // the LF of a CRLF split across chunks
  }
  while (pos < n) {
    const size_t eol = bytes.find_first_of("\r\n", pos);
    if (eol == std::string_view::npos) {
      AppendToLine(bytes.substr(pos));
      return;
    }
    if (line_.empty() && !line_truncated_) {
      ProcessLine(bytes.substr(pos, eol - pos), sink);  // a line whole in this chunk: no copy
    } else {
      AppendToLine(bytes.substr(pos, eol - pos));
      ProcessLine(line_, sink);
      line_.clear();
      line_truncated_ = false;
    }
    pos = eol + 1;
    if (bytes[eol] == '\r') {
      if (pos == n) {
        after_cr_ = true;
      } else if (bytes[pos] == '\n') {
        ++pos;
      }
    }
  }
}

void UsageFramer::AppendToLine(std::string_view piece) {
  if (line_truncated_) return;
  const size_t limit = max_event_bytes_ + kLineSlack;
  if (line_.size() + piece.size() > limit) {
    // Keep the head (the field name is all ProcessLine still needs) and drop the rest.
    line_.append(piece.substr(0, limit - line_.size()));
    line_truncated_ = true;
    return;
  }
  line_.append(piece);
}

void UsageFramer::ProcessLine(std::string_view line, UsageEventSink& sink) {
  if (line.empty()) {  // the end of an event
    if (has_data_) {
      if (data_oversized_) {
        sink.OnOversized();
      } else {
        data_.pop_back();  // the '\n' after the last data line
        sink.OnEvent(type_, data_);
      }
    }
    type_.clear();
    data_.clear();
    has_data_ = false;
    data_oversized_ = false;
    return;
  }
  if (line.front() == ':') return;  // a comment (DashScope's ":HTTP_STATUS/200")
  const size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : line.substr(colon + 1);
  if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  if (field == "data") {
    has_data_ = true;
    if (data_oversized_) return;
    // The joined data would be data_ (earlier lines, each with its '\n') + value.
    if (line_truncated_ || data_.size() + value.size() > max_event_bytes_) {
      data_oversized_ = true;
      data_.clear();
      return;
    }
    data_.append(value);
    data_.push_back('\n');
  } else if (field == "event") {
    type_.assign(value.substr(0, kMaxTypeBytes));
  }  // id and retry concern a live connection; other fields are ignored by the spec
}

// ---- JSON -----------------------------------------------------------------------------------

void UsageFramer::FeedJson(std::string_view bytes, UsageEventSink& sink) {
  // Only strings and brackets matter: a record is an object at the top level, or an object
  // element of a top-level array; it ends where its brackets balance.
  size_t record_from = in_record_ ? 0 : std::string_view::npos;
  size_t i = 0;
  const size_t n = bytes.size();
  while (i < n) {
    if (in_string_) {
      if (escaped_) {
        escaped_ = false;
        ++i;
        continue;
      }
      const size_t q = bytes.find_first_of("\"\\", i);
      if (q == std::string_view::npos) break;
      if (bytes[q] == '\\') {
        escaped_ = true;
      } else {
        in_string_ = false;
      }
      i = q + 1;
      continue;
    }
    const size_t s = bytes.find_first_of("\"{}[]", i);
    if (s == std::string_view::npos) break;
    i = s + 1;
    const int64_t base = in_top_array_ ? 1 : 0;
    switch (bytes[s]) {
      case '"':
        in_string_ = true;
        break;
      case '[':
        if (depth_ == 0) {
          in_top_array_ = true;
          depth_ = 1;
          break;
        }
        ++depth_;
        break;
      case '{':
        if (depth_ == base) {
          in_record_ = true;
          record_from = s;
        }
        ++depth_;
        break;
      default:  // '}' or ']'
        if (depth_ == 0) break;  // unbalanced: nothing to close
        --depth_;
        if (in_record_ && depth_ == base) {
          EndRecord(bytes.substr(record_from, s + 1 - record_from), sink);
          record_from = std::string_view::npos;
        } else if (depth_ == 0) {
          in_top_array_ = false;
        }
        break;
    }
  }
  if (in_record_) AppendToRecord(bytes.substr(record_from));
}

void UsageFramer::AppendToRecord(std::string_view piece) {
  if (record_oversized_) return;
  if (record_.size() + piece.size() > max_event_bytes_) {
    record_oversized_ = true;
    record_.clear();
    return;
  }
  record_.append(piece);
}

void UsageFramer::EndRecord(std::string_view tail, UsageEventSink& sink) {
  if (record_.empty() && !record_oversized_) {
    // The whole record is in this chunk: no copy.
    if (tail.size() > max_event_bytes_) {
      sink.OnOversized();
    } else {
      sink.OnEvent({}, tail);
    }
  } else {
    AppendToRecord(tail);
    if (record_oversized_) {
      sink.OnOversized();
    } else {
      sink.OnEvent({}, record_);
    }
  }
  record_.clear();
  in_record_ = false;
  record_oversized_ = false;
}

}  // namespace internal
}  // namespace v1
}  // namespace sluice
