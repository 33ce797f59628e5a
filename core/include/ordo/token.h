// ordo/token.h: a dependency token, a string or an integer key.
//
// Operations that share a token run one at a time in creation order. A string
// token and an integer token never match each other, even when they spell the
// same digits. A default-constructed Token means "no token" (an independent
// operation); an empty string is a bad token and Submit rejects it.
#ifndef ORDO_TOKEN_H_
#define ORDO_TOKEN_H_

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>

namespace ordo {

namespace internal {
// The hashes the engine keys tokens by (token_map.cc): a Token computes its
// own once, when its key is set, so that a submit that copies it (as
// SubmitOptions does) does not hash the text again.
std::uint64_t TokenTextHash(std::string_view text);
std::uint64_t TokenIntegerHash(std::uint64_t key);
struct TokenAccess;
}  // namespace internal

class Token {
 public:
  enum class Kind : std::uint8_t { kNone, kString, kInteger };

  Token() = default;
  Token(std::string_view s) : kind_(Kind::kString) {  // NOLINT: implicit by design
    Assign(s, internal::TokenTextHash(s));
  }
  Token(const std::string& s) : Token(std::string_view(s)) {}      // NOLINT
  // A null pointer (getenv's "not set", say) is an empty string, which Submit
  // refuses with InvalidArgument.
  Token(const char* s) : Token(s != nullptr ? std::string_view(s) : std::string_view()) {}  // NOLINT
  // An integer key is its 64-bit pattern (two's complement): Token(-1) and
  // Token(UINT64_MAX) are the same token, shown as "#18446744073709551615".
  template <std::integral I>
    requires(!std::same_as<I, bool> && !std::same_as<I, char>)
  Token(I key)  // NOLINT
      : kind_(Kind::kInteger),
        integer_(static_cast<std::uint64_t>(key)),
        hash_(internal::TokenIntegerHash(integer_)) {}

  Token(const Token& o) : kind_(o.kind_), integer_(o.integer_) {
    if (o.heap_ == nullptr) {  // inline text: at most kInlineText bytes
      std::memcpy(inline_, o.inline_, o.size_);
      size_ = o.size_;
      hash_ = o.hash_;
    } else {
      Assign(o.text(), o.hash_);
    }
  }
  // A moved-from Token keeps its kind and loses its text: a string token is then
  // the empty string, which Submit and the token controls refuse
  // (InvalidArgument), not "no token". Assign it before using it again.
  Token(Token&& o) noexcept
      : kind_(o.kind_),
        size_(o.size_),
        integer_(o.integer_),
        hash_(o.hash_),
        heap_(std::move(o.heap_)) {
    if (heap_ == nullptr) std::memcpy(inline_, o.inline_, size_);
    o.size_ = 0;
    if (o.kind_ == Kind::kString) o.hash_ = 0;  // its text is gone (0: not known)
  }
  // A copy first, then a move: out of memory for a long text, this Token is
  // left as it was.
  Token& operator=(const Token& o) {
    if (this != &o) *this = Token(o);
    return *this;
  }
  Token& operator=(Token&& o) noexcept {
    if (this != &o) {
      kind_ = o.kind_;
      integer_ = o.integer_;
      size_ = o.size_;
      hash_ = o.hash_;
      heap_ = std::move(o.heap_);
      if (heap_ == nullptr) std::memcpy(inline_, o.inline_, size_);
      o.size_ = 0;
      if (o.kind_ == Kind::kString) o.hash_ = 0;  // its text is gone (0: not known)
    }
    return *this;
  }
  ~Token() = default;

  Kind kind() const { return kind_; }
  bool empty() const { return kind_ == Kind::kNone; }
  // For kString: the text (valid while this Token lives); for kInteger: empty.
  std::string_view text() const {
    return std::string_view(heap_ != nullptr ? heap_.get() : inline_, size_);
  }
  std::uint64_t integer() const { return integer_; }

  // A readable rendering: the text, or "#<n>" for an integer key.
  std::string ToString() const {
    return kind_ == Kind::kInteger ? "#" + std::to_string(integer_) : std::string(text());
  }

  // Text up to this many bytes is kept inside the Token, so copying one (as
  // SubmitOptions does on every Submit) allocates nothing for the usual keys: a
  // UUID is 36 bytes. A longer text is copied to the heap.
  static constexpr std::size_t kInlineText = 48;

 private:
  // The size and hash are set last, after the one allocation (from the
  // constructors only: operator= copies, then moves, for its strong guarantee).
  void Assign(std::string_view s, std::uint64_t hash) {
    if (s.size() <= kInlineText) {
      heap_.reset();
      if (!s.empty()) std::memcpy(inline_, s.data(), s.size());
    } else {
      std::unique_ptr<char[]> text = std::make_unique<char[]>(s.size());
      std::memcpy(text.get(), s.data(), s.size());
      heap_ = std::move(text);
    }
    size_ = s.size();
    hash_ = hash;
  }

  Kind kind_ = Kind::kNone;
  std::size_t size_ = 0;
  std::uint64_t integer_ = 0;
  // internal::TokenTextHash of the text, or TokenIntegerHash of the integer; 0
  // when not known (no token, a moved-from text), and the engine computes it.
  std::uint64_t hash_ = 0;
  std::unique_ptr<char[]> heap_;  // the text when longer than kInlineText
  char inline_[kInlineText];      // the text otherwise (first size_ bytes)

  friend struct internal::TokenAccess;
};

}  // namespace ordo

#endif  // ORDO_TOKEN_H_
