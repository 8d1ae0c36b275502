#include "spool/spool.h"

#include <utility>

namespace hikyaku::spool {
namespace {

MessageEnvelope EnvelopeOf(IncomingMessage& m) {
  return MessageEnvelope{m.id,
                         std::move(m.sender),
                         m.received_at,
                         std::move(m.origin),
                         static_cast<uint32_t>(m.recipients.size()),
                         std::move(m.tenant),
                         m.priority};
}

}  // namespace

Result<MessageEnvelope> Spool::ReadEnvelope(MessageId id) {
  auto m = ReadMessage(id);
  if (!m) return tl::unexpected(m.error());
  return EnvelopeOf(*m);
}

Result<MessageContent> Spool::ReadContent(MessageId id) {
  auto m = ReadMessage(id);
  if (!m) return tl::unexpected(m.error());
  std::string content = std::move(m->content);
  return MessageContent{EnvelopeOf(*m), std::move(content)};
}

Result<std::vector<std::string>> Spool::ReadRecipients(MessageId id, std::span<const uint32_t> indices) {
  auto m = ReadMessage(id);
  if (!m) return tl::unexpected(m.error());
  std::vector<std::string> out;
  out.reserve(indices.size());
  for (uint32_t i : indices) {
    if (i >= m->recipients.size())
      return Fail(ErrorCode::kNotFound, "spool: message " + id.ToString() + " has no recipient " + std::to_string(i));
    out.push_back(m->recipients[i]);
  }
  return out;
}

}  // namespace hikyaku::spool
