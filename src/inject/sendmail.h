// `hikyaku sendmail`: a sendmail-compatible front end. Reads one message on
// stdin, completes it like a submission agent (RFC 6409 8: adds From, Date
// and Message-ID when missing; with -t takes recipients from To/Cc/Bcc and
// removes Bcc), and hands it to the running daemon over SMTP on the first
// smtp_in.listen address. It never queues by itself: when the daemon cannot
// take the message the caller is told so through the exit status.
//
// Exit statuses follow sysexits(3), as sendmail's do, so PHP's mail() and
// scripts can tell outcomes apart: 0 accepted (durable in the spool),
// 64 usage, 65 bad message, 67 recipient refused, 75 temporary failure
// (daemon down, spool full: try again later), 78 configuration error.
#pragma once

#include <iosfwd>

#include "base/clock.h"
#include "config/config.h"
#include "inject/sendmail_args.h"

namespace hikyaku::inject {

inline constexpr int kExOk = 0;
inline constexpr int kExUsage = 64;
inline constexpr int kExDataErr = 65;
inline constexpr int kExNoUser = 67;
inline constexpr int kExSoftware = 70;
inline constexpr int kExTempFail = 75;
inline constexpr int kExConfig = 78;

// Builds the message from `input` and submits it; diagnostics go to `err`.
int RunSendmail(const SendmailArgs& args, const config::Config& config, std::istream& input, std::ostream& err,
                const Clock& clock);

}  // namespace hikyaku::inject
