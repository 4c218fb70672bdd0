// -----------------------------------------------------------------------------
// File: sluice/bytes.h
// -----------------------------------------------------------------------------
//
// `Bytes` is an immutable byte string that either owns its bytes (a std::string) or views bytes
// that a shared `owner` keeps alive. A cached answer's body is a Bytes: C++ callers store
// strings, while the Python binding stores a view of the caller's `bytes` object with that
// object as the owner, so that storing an answer and reading it back from Python copies nothing.
//
//   sluice::Bytes owned = std::string("{...}");
//   sluice::Bytes viewed(buffer_owner, std::string_view(data, size));  // keeps buffer_owner
//   std::string_view v = owned;                                         // either way
//
// Thread-safety: a Bytes is immutable; copies share the owner (a shared_ptr), so any number of
// threads may read copies at once. The owner's deleter runs on whichever thread drops the last
// reference.

#ifndef SLUICE_BYTES_H_
#define SLUICE_BYTES_H_

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace sluice {
inline namespace v1 {

class Bytes {
 public:
  Bytes() = default;
  // Owns a copy (implicit: a string is a natural answer body).
  Bytes(std::string bytes) : owned_(std::move(bytes)) {}  // NOLINT(google-explicit-constructor)
  Bytes(const char* bytes) : owned_(bytes) {}             // NOLINT(google-explicit-constructor)
  // Views `view`, which `owner` keeps alive and unchanged for as long as it lives.
  Bytes(std::shared_ptr<const void> owner, std::string_view view)
      : owner_(std::move(owner)), view_(view) {}

  std::string_view view() const { return owner_ != nullptr ? view_ : std::string_view(owned_); }
  operator std::string_view() const { return view(); }  // NOLINT(google-explicit-constructor)
  const char* data() const { return view().data(); }
  size_t size() const { return view().size(); }
  bool empty() const { return view().empty(); }
  char operator[](size_t i) const { return view()[i]; }
  // The owner of a viewed Bytes; null when it owns its bytes.
  const std::shared_ptr<const void>& owner() const { return owner_; }

  friend bool operator==(const Bytes& a, std::string_view b) { return a.view() == b; }

 private:
  std::string owned_;
  std::shared_ptr<const void> owner_;
  std::string_view view_;
};

}  // namespace v1
}  // namespace sluice

#endif  // SLUICE_BYTES_H_
