// Cuts a provider's answer, fed in arbitrary chunks, into the events UsageReader parses: SSE
// events (WHATWG "Interpreting an event stream") or the objects of a JSON body (one object, a
// JSON array of objects, or NDJSON). It keeps only the unfinished event, at most
// `max_event_bytes` of it: a larger one is dropped as it grows and reported as oversized.
//
// Why a framer before any parsing: a network read is an arbitrary byte range, not an event.
// Higress parsed each read as if it held whole events and lost usage whenever the usage event
// was split (higress-group/higress issues 4146, 4248; 2918 for JSON bodies).
#ifndef SLUICE_LIB_FORMATS_USAGE_FRAMING_H_
#define SLUICE_LIB_FORMATS_USAGE_FRAMING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sluice {
inline namespace v1 {
namespace internal {

// Receives the framer's events, in stream order.
class UsageEventSink {
 public:
  virtual ~UsageEventSink() = default;
  // A whole event: its SSE type ("" when it has none; always "" for JSON) and its data (the
  // `data:` lines joined with '\n', or one JSON object's bytes). `data` is valid during the call.
  virtual void OnEvent(std::string_view type, std::string_view data) = 0;
  // An event dropped because its data exceeded max_event_bytes.
  virtual void OnOversized() = 0;
};

class UsageFramer {
 public:
  // REQUIRES: max_event_bytes > 0.
  explicit UsageFramer(size_t max_event_bytes);

  // Frames `bytes`, the continuation of what was fed before.
  void Feed(std::string_view bytes, UsageEventSink& sink);
  // The stream ended: an event it ends in the middle of is delivered as it is (the reader's
  // parser decides whether it is whole). Feed may not be called after it.
  void Finish(UsageEventSink& sink);

 private:
  enum class Mode { kUnknown, kSse, kJson };

  void FeedSse(std::string_view bytes, UsageEventSink& sink);
  void AppendToLine(std::string_view piece);
  void ProcessLine(std::string_view line, UsageEventSink& sink);
  void FeedJson(std::string_view bytes, UsageEventSink& sink);
  void AppendToRecord(std::string_view piece);
  void EndRecord(std::string_view tail, UsageEventSink& sink);

  const size_t max_event_bytes_;
  Mode mode_ = Mode::kUnknown;
  size_t bom_matched_ = 0;  // bytes of a leading UTF-8 BOM consumed so far
  bool at_start_ = true;    // no byte other than a BOM's seen yet

  // SSE: the unfinished line, and the event being assembled.
  std::string line_;
  bool line_truncated_ = false;  // line_ holds only its first bytes
  bool after_cr_ = false;        // the last line ended with CR: a LF first in the next chunk ends it too
  std::string type_;
  std::string data_;
  bool has_data_ = false;
  bool data_oversized_ = false;

  // JSON: the scanner's state, and the object being assembled.
  int64_t depth_ = 0;
  bool in_string_ = false;
  bool escaped_ = false;
  bool in_top_array_ = false;  // records are the elements of a top-level array
  bool in_record_ = false;
  bool record_oversized_ = false;
  std::string record_;
};

}  // namespace internal
}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_LIB_FORMATS_USAGE_FRAMING_H_
