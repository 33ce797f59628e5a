// ordo/token.h: a dependency token, a string or an integer key.
//
// Operations that share a token run one at a time in creation order. A string
// token and an integer token never match each other, even when they spell the
// same digits. A default-constructed Token means "no token" (an independent
// operation); an empty string is a bad token and Submit rejects it.
#ifndef ORDO_TOKEN_H_
#define ORDO_TOKEN_H_

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

namespace ordo {

class Token {
 public:
  enum class Kind : std::uint8_t { kNone, kString, kInteger };

  Token() = default;
  Token(std::string s) : kind_(Kind::kString), text_(std::move(s)) {}  // NOLINT: implicit by design
  Token(std::string_view s) : kind_(Kind::kString), text_(s) {}       // NOLINT
  Token(const char* s) : kind_(Kind::kString), text_(s) {}            // NOLINT
  template <std::integral I>
    requires(!std::same_as<I, bool> && !std::same_as<I, char>)
  Token(I key)  // NOLINT
      : kind_(Kind::kInteger), integer_(static_cast<std::uint64_t>(key)) {}

  Kind kind() const { return kind_; }
  bool empty() const { return kind_ == Kind::kNone; }
  // For kString: the text; for kInteger: empty.
  const std::string& text() const { return text_; }
  std::uint64_t integer() const { return integer_; }

  // A readable rendering: the text, or "#<n>" for an integer key.
  std::string ToString() const {
    return kind_ == Kind::kInteger ? "#" + std::to_string(integer_) : text_;
  }

 private:
  Kind kind_ = Kind::kNone;
  std::string text_;
  std::uint64_t integer_ = 0;
};

}  // namespace ordo

#endif  // ORDO_TOKEN_H_
