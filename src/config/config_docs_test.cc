// Docs as code: every key the parser accepts must be documented in
// docs/configuration.md as a backticked dotted name, e.g. `spool.sync`.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "config/config.h"

namespace hikyaku::config {
namespace {

std::string ReadDocs() {
  std::ifstream in(std::string(HIKYAKU_SOURCE_DIR) + "/docs/configuration.md");
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

TEST(ConfigDocsTest, EveryKnownKeyIsDocumented) {
  std::string docs = ReadDocs();
  ASSERT_FALSE(docs.empty()) << "cannot read docs/configuration.md";
  std::string missing;
  for (const std::string& key : KnownKeys()) {
    if (docs.find("`" + key + "`") == std::string::npos) missing += " " + key;
  }
  EXPECT_TRUE(missing.empty())
      << "keys accepted by the parser but not documented in docs/configuration.md "
         "(as `dotted.name`):"
      << missing;
}

TEST(ConfigDocsTest, DocumentsExitStatusAndUnits) {
  std::string docs = ReadDocs();
  EXPECT_NE(docs.find("78"), std::string::npos) << "exit status on configuration errors";
  EXPECT_NE(docs.find("1024"), std::string::npos) << "size units are binary";
}

}  // namespace
}  // namespace hikyaku::config
