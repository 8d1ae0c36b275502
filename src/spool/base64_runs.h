// Base64 runs: the blocks of base64 lines in a message text (attachments,
// images, base64 text parts), found so the spool can store them as the bytes
// they encode: 3/4 of the size, and no CPU spent trying to compress text
// that an entropy coder can only shrink back to those 3/4.
//
// A run is what a MIME encoder writes: lines of one length L (a multiple of
// 4), each of the standard alphabet and ended by CRLF, then optionally one
// shorter last line (a multiple of 4, at most L) that may end in "=" or "=="
// padding; the run ends after a padded line. Only canonical text counts (the
// unused bits before padding are zero), so the decoded bytes, the line
// length and the decoded size give back exactly the text that was found:
// ExpandBase64Run(decoded, L) == the run's text, byte for byte. Anything
// else (other line ends, other characters, uneven lines) stays plain text.
//
// Thread-safety: pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace hikyaku::spool {

struct Base64Run {
  size_t offset = 0;        // where the run's first line starts in the text
  size_t length = 0;        // characters of the run in the text, CRLFs included
  uint32_t line_length = 0; // L: characters per line before CRLF (the last line may be shorter)
  size_t decoded_size = 0;  // bytes the run encodes
};

// Longest line a run may have. MIME writes 76; longer base64 lines are rare
// and RFC 5322 caps any line at 998.
constexpr uint32_t kMaxBase64LineLength = 996;

// Finds the runs of at least `min_length` characters in `text`, in order,
// and appends the bytes each encodes to `decoded` (one after the other).
std::vector<Base64Run> FindBase64Runs(std::string_view text, size_t min_length, std::string& decoded);

// The characters (CRLFs included) of a run of `decoded_size` bytes written
// in lines of `line_length`.
size_t Base64RunLength(size_t decoded_size, uint32_t line_length);

// Appends the text of the run that encodes `bytes` in lines of
// `line_length` characters (a multiple of 4, 4..kMaxBase64LineLength).
void ExpandBase64Run(std::string_view bytes, uint32_t line_length, std::string& out);

}  // namespace hikyaku::spool
