#include "trainer/tensorboard.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "trainer/tb_event.pb.h"
#include "kernels/status.h"

namespace rotor {
namespace {

namespace fs = std::filesystem;

constexpr char kFileVersion[] = "brain.Event:2";
constexpr size_t kHeaderBytes = 12;  // uint64 length + uint32 masked CRC of it
constexpr size_t kFooterBytes = 4;   // uint32 masked CRC of the data

// CRC-32C, table-driven (one byte at a time). Debian bookworm packages no C++
// CRC-32C library (its Abseil, 20220623, predates absl/crc, and zlib's crc32
// is the other polynomial), and event files are small, so this is enough.
// Reflected Castagnoli polynomial 0x82F63B78, initial value and final xor
// 0xFFFFFFFF. The table is a compile-time constant.
constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    t[i] = c;
  }
  return t;
}
constexpr std::array<uint32_t, 256> kCrc32cTable = make_crc32c_table();

void put_u32le(uint32_t v, char* p) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}
void put_u64le(uint64_t v, char* p) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<char>((v >> (8 * i)) & 0xFFu);
}
uint32_t get_u32le(const unsigned char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t get_u64le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

std::string hostname() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::Status check_tag(const std::string& path, const std::string& tag) {
  if (tag.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": empty scalar tag"));
  return absl::OkStatus();
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = kCrc32cTable[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

absl::StatusOr<TensorBoardWriter> TensorBoardWriter::open(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, ": cannot create TensorBoard log directory: ", ec.message()));
  }
  const std::string base =
      (fs::path(dir) / absl::StrFormat("events.out.tfevents.%010d.%s.%d",
                                       static_cast<long long>(std::time(nullptr)), hostname(),
                                       static_cast<int>(getpid())))
          .string();
  std::string path = base;
  int fd = -1;
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) path = absl::StrCat(base, ".", attempt);
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) break;
    if (errno != EEXIST || attempt >= 1000) {
      return absl::PermissionDeniedError(
          absl::StrCat(path, ": cannot create TensorBoard event file: ", std::strerror(errno)));
    }
  }
  TensorBoardWriter w(fd, path);
  tb::Event event;
  event.set_wall_time(now_s());
  event.set_file_version(kFileVersion);
  absl::Status s = w.write_record(event.SerializeAsString());
  if (!s.ok()) return s;
  return w;
}

TensorBoardWriter::TensorBoardWriter(TensorBoardWriter&& other) noexcept
    : fd_(other.fd_), path_(std::move(other.path_)) {
  other.fd_ = -1;
}

TensorBoardWriter& TensorBoardWriter::operator=(TensorBoardWriter&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    path_ = std::move(other.path_);
    other.fd_ = -1;
  }
  return *this;
}

TensorBoardWriter::~TensorBoardWriter() {
  if (fd_ >= 0) ::close(fd_);
}

absl::Status TensorBoardWriter::write_record(const std::string& data) {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
  std::string rec(kHeaderBytes + data.size() + kFooterBytes, '\0');
  put_u64le(data.size(), rec.data());
  put_u32le(masked_crc32c(rec.data(), 8), rec.data() + 8);
  std::memcpy(rec.data() + kHeaderBytes, data.data(), data.size());
  put_u32le(masked_crc32c(data.data(), data.size()), rec.data() + kHeaderBytes + data.size());
  // One record, one write(2) (looping only on a short write or EINTR).
  size_t done = 0;
  while (done < rec.size()) {
    const ssize_t n = ::write(fd_, rec.data() + done, rec.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::DataLossError(absl::StrCat(path_, ": write failed: ", std::strerror(errno)));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status TensorBoardWriter::add_scalar(const std::string& tag, int64_t step, double value,
                                           double wall_time_s) {
  return add_scalars(step, {{tag, value}}, wall_time_s);
}

absl::Status TensorBoardWriter::add_scalars(
    int64_t step, const std::vector<std::pair<std::string, double>>& values, double wall_time_s) {
  if (values.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": add_scalars with no values"));
  }
  tb::Event event;
  event.set_wall_time(wall_time_s);
  event.set_step(step);
  tb::Summary* summary = event.mutable_summary();
  for (const auto& [tag, value] : values) {
    ROTOR_RETURN_IF_ERROR(check_tag(path_, tag));
    tb::Summary::Value* v = summary->add_value();
    v->set_tag(tag);
    v->set_simple_value(static_cast<float>(value));
  }
  return write_record(event.SerializeAsString());
}

absl::Status TensorBoardWriter::flush() {
  if (fd_ < 0) return absl::FailedPreconditionError(absl::StrCat(path_, ": writer is closed"));
  if (::fsync(fd_) != 0) {
    return absl::DataLossError(absl::StrCat(path_, ": fsync failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<TbScalar>> read_tensorboard_scalars(const std::string& path,
                                                               std::string* file_version) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read failed"));
  const auto* b = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t size = bytes.size();

  if (file_version != nullptr) file_version->clear();
  bool have_version = false;
  std::vector<TbScalar> out;
  size_t off = 0;
  while (off < size) {
    auto bad = [&](const std::string& what) {
      return absl::DataLossError(
          absl::StrCat(path, ": record at byte offset ", off, ": ", what));
    };
    if (size - off < kHeaderBytes) {
      return bad(absl::StrCat("truncated header (", size - off, " of ", kHeaderBytes, " bytes)"));
    }
    const uint64_t len = get_u64le(b + off);
    if (get_u32le(b + off + 8) != masked_crc32c(b + off, 8)) return bad("length CRC mismatch");
    const size_t avail = size - off - kHeaderBytes;
    if (avail < kFooterBytes || len > avail - kFooterBytes) {
      return bad(absl::StrCat("truncated (length ", len, ", ", avail,
                              " bytes follow the header, need length + 4)"));
    }
    const unsigned char* data = b + off + kHeaderBytes;
    if (get_u32le(data + len) != masked_crc32c(data, len)) return bad("data CRC mismatch");
    if (len > static_cast<uint64_t>(std::numeric_limits<int>::max())) {
      return bad("record too large");
    }
    tb::Event event;
    if (!event.ParseFromArray(data, static_cast<int>(len))) return bad("not a valid Event");
    if (event.what_case() == tb::Event::kFileVersion && !have_version) {
      have_version = true;
      if (file_version != nullptr) *file_version = event.file_version();
    }
    if (event.what_case() == tb::Event::kSummary) {
      for (const tb::Summary::Value& v : event.summary().value()) {
        if (v.value_case() != tb::Summary::Value::kSimpleValue) continue;
        out.push_back(TbScalar{event.step(), event.wall_time(), v.tag(), v.simple_value()});
      }
    }
    off += kHeaderBytes + len + kFooterBytes;
  }
  return out;
}

}  // namespace rotor
