// A scratch directory for tests: made under the system's temporary
// directory, removed with everything in it when the object goes away —
// unless HIKYAKU_KEEP_TEST_DIRS is set, to look at what a failed test left.
#pragma once

#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

namespace hikyaku {

class TempDir {
 public:
  explicit TempDir(std::string_view prefix = "hikyaku") {
    std::string pattern = (std::filesystem::temp_directory_path() / (std::string(prefix) + ".XXXXXX")).string();
    if (mkdtemp(pattern.data()) == nullptr) std::abort();  // a test cannot run without it
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    if (std::getenv("HIKYAKU_KEEP_TEST_DIRS") == nullptr) std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Writes `contents` to the file `name` in the directory; returns its path.
  std::filesystem::path Write(const std::string& name, const std::string& contents) const {
    std::filesystem::path file = path_ / name;
    std::ofstream(file, std::ios::binary) << contents;
    return file;
  }

 private:
  std::filesystem::path path_;
};

}  // namespace hikyaku
