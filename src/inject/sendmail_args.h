// SendmailArgs: the command line of `hikyaku sendmail`, parsed the way
// sendmail(8) and Postfix's sendmail(1) read it, so that existing callers
// (PHP's mail() via sendmail_path, cron, scripts) work unchanged.
//
// Accepted: -t, -i, -oi, -f ADDR / -fADDR, -r ADDR (same as -f), -F NAME,
// -C FILE / -c FILE (hikyaku configuration), --, recipients. Options that only
// tune the real sendmail's queueing (-odi, -odb, -oem, -om, -v, -bm, -n,
// -N dsn, -R ret, -V envid, -X log, -B type, -L tag, -h hops, -O opt,
// -o<anything>) are accepted and ignored. Other modes (-bp, -bs, -bd, -q...)
// are usage errors.
//
// Thread-safety: pure function.
#pragma once

#include <optional>
#include <variant>
#include <string>
#include <vector>

namespace hikyaku::inject {

struct SendmailArgs {
  bool extract_recipients = false;  // -t: To/Cc/Bcc give the recipients (plus any on the command line)
  bool dot_terminates = true;       // without -i/-oi a line with a single "." ends the message
  std::optional<std::string> sender;     // -f / -r
  std::optional<std::string> full_name;  // -F, used for a missing From: header
  std::optional<std::string> config_path;
  std::vector<std::string> recipients;
};

struct SendmailUsageError {
  std::string message;
};

// `args` excludes the program name and the "sendmail" subcommand word.
std::variant<SendmailArgs, SendmailUsageError> ParseSendmailArgs(const std::vector<std::string>& args);

}  // namespace hikyaku::inject
