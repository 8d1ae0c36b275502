#include "inject/sendmail_args.h"

#include <set>

namespace hikyaku::inject {

std::variant<SendmailArgs, SendmailUsageError> ParseSendmailArgs(const std::vector<std::string>& args) {
  SendmailArgs out;
  // Flags of the real sendmail that take a value and that we ignore.
  static const std::set<char> kIgnoredWithValue = {'N', 'R', 'V', 'X', 'B', 'L', 'h', 'O', 'p'};
  static const std::set<char> kIgnoredFlags = {'v', 'n', 'U', 'm', 'G', 'A'};

  auto value = [&](size_t& i, const std::string& arg, const char* what) -> std::optional<std::string> {
    if (arg.size() > 2) return arg.substr(2);
    if (i + 1 < args.size()) return args[++i];
    return std::nullopt;
  };

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      for (++i; i < args.size(); ++i) out.recipients.push_back(args[i]);
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      out.recipients.push_back(arg);
      continue;
    }
    const char flag = arg[1];
    switch (flag) {
      case 't':
        if (arg != "-t") return SendmailUsageError{"unknown option " + arg};
        out.extract_recipients = true;
        break;
      case 'i':
        if (arg != "-i") return SendmailUsageError{"unknown option " + arg};
        out.dot_terminates = false;
        break;
      case 'o':
        // -oi is the only -o option with meaning here; -odb, -oem, -oXvalue... are queue tuning.
        if (arg == "-oi") out.dot_terminates = false;
        if (arg == "-o") return SendmailUsageError{"option -o needs a value"};
        break;
      case 'f':
      case 'r': {
        auto v = value(i, arg, "sender");
        if (!v) return SendmailUsageError{std::string("option -") + flag + " needs an address"};
        // "<>" and "" both mean the null sender (bounces).
        out.sender = (*v == "<>") ? "" : *v;
        if (out.sender->size() >= 2 && out.sender->front() == '<' && out.sender->back() == '>')
          out.sender = out.sender->substr(1, out.sender->size() - 2);
        break;
      }
      case 'F': {
        auto v = value(i, arg, "full name");
        if (!v) return SendmailUsageError{"option -F needs a name"};
        out.full_name = *v;
        break;
      }
      case 'C':
      case 'c': {
        auto v = value(i, arg, "config");
        if (!v) return SendmailUsageError{std::string("option -") + flag + " needs a file"};
        out.config_path = *v;
        break;
      }
      case 'b':
        if (arg == "-bm") break;  // "deliver mail", the default mode
        return SendmailUsageError{"mode " + arg + " is not supported by hikyaku sendmail (only -bm)"};
      case 'd':
        break;  // -d debug levels: ignored
      default:
        if (kIgnoredWithValue.count(flag)) {
          if (arg.size() == 2) ++i;
          break;
        }
        if (kIgnoredFlags.count(flag) && arg.size() == 2) break;
        return SendmailUsageError{"unknown option " + arg};
    }
  }
  return out;
}

}  // namespace hikyaku::inject
