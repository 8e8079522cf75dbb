// Byte and SentencePiece tokenizers. See tokenizer.h.
#include "data/tokenizer.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kernels/status.h"

// sentencepiece_processor.h declares `namespace absl { using std::string_view; }`,
// which clashes with Abseil's own absl::string_view class; rename its namespace
// for the duration of the include (the alias is std::string_view either way, so
// the library's symbols are unaffected).
#define absl sentencepiece_absl
#include <sentencepiece_processor.h>
#undef absl

#include <dlfcn.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <new>
#include <sstream>
#include <string_view>

// Why dlopen: Debian's libsentencepiece.so bundles protobuf-lite 3.14 and
// exports its symbols (google::protobuf::*). Linked into the same process as
// the system libprotobuf (3.21, used by trainer/ for the recipe schema), one
// library's calls bind to the other's copy and the process crashes during
// static initialization. So rotor does not link it: make_tokenizer("spm:...")
// loads libsentencepiece.so.0 with RTLD_LOCAL | RTLD_DEEPBIND (its symbols stay
// private and bind to themselves first) and calls SentencePieceProcessor
// through its vtable (every method used is virtual). The non-virtual
// functions needed (the constructor, util::Status's destructor and ToString)
// are looked up with dlsym; a util::Status result is constructed in place
// and destroyed through the library (sentencepiece_call), never by C++ code here.
namespace {

struct SentencePieceLib {
  void* handle = nullptr;
  std::string error;
  void (*construct)(void* self) = nullptr;                      // SentencePieceProcessor()
  void (*status_destroy)(void* self) = nullptr;                 // util::Status::~Status()
  std::string (*status_to_string)(const void* self) = nullptr;  // Status::ToString()
};

template <class F>
bool bind_symbol(const SentencePieceLib& lib, const char* symbol, F& fn, std::string& error) {
  void* p = dlsym(lib.handle, symbol);
  if (p == nullptr) {
    error = std::string("libsentencepiece.so.0 lacks ") + symbol;
    return false;
  }
  fn = reinterpret_cast<F>(p);
  return true;
}

const SentencePieceLib& sentencepiece_lib() {
  static SentencePieceLib lib;
  static std::once_flag once;
  std::call_once(once, [] {
    lib.handle = dlopen("libsentencepiece.so.0", RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (lib.handle == nullptr) {
      const char* e = dlerror();
      lib.error =
          absl::StrCat("cannot load libsentencepiece.so.0 (Debian package libsentencepiece0): ",
                       e != nullptr ? e : "unknown error");
      return;
    }
    std::string error;
    if (!bind_symbol(lib, "_ZN13sentencepiece22SentencePieceProcessorC1Ev", lib.construct, error) ||
        !bind_symbol(lib, "_ZN13sentencepiece4util6StatusD1Ev", lib.status_destroy, error) ||
        !bind_symbol(lib, "_ZNK13sentencepiece4util6Status8ToStringB5cxx11Ev", lib.status_to_string,
                     error)) {
      lib.error = error;
      dlclose(lib.handle);
      lib.handle = nullptr;
    }
  });
  return lib;
}

// Runs `call` (a SentencePiece method returning util::Status). Returns true
// on success; otherwise false with the status text in `error`.
template <class F>
bool sentencepiece_call(F&& call, std::string& error) {
  using Status = sentencepiece::util::Status;
  const SentencePieceLib& lib = sentencepiece_lib();
  alignas(Status) unsigned char storage[sizeof(Status)];
  // Guaranteed copy elision: the callee builds its result in `storage`.
  Status* status = ::new (static_cast<void*>(storage)) Status(call());
  const bool ok = status->ok();
  if (!ok) error = lib.status_to_string(status);
  lib.status_destroy(status);
  return ok;
}

// SentencePiece's load error, made readable: a file that does not parse as a
// ModelProto gets "not a SentencePiece model" (and a hint for JSON, the usual
// mistake being a Hugging Face tokenizer.json); otherwise its own text ("b is
// already defined.", "unk is not defined."), less the "Internal: " prefix.
std::string explain_load_error(const std::string& serialized, std::string error) {
  if (absl::StrContains(error, "ParseFromArray")) {
    const size_t first = serialized.find_first_not_of(" \t\r\n");
    const bool json = first != std::string::npos && serialized[first] == '{';
    return absl::StrCat("not a SentencePiece model (", serialized.size(),
                        " bytes that do not parse as a ModelProto protobuf",
                        json ? "; the file looks like JSON, e.g. a Hugging Face tokenizer.json, "
                               "which rotor does not read"
                             : "; truncated or another format",
                        ")");
  }
  for (const char* prefix : {"Internal: ", "INTERNAL: "}) {
    if (absl::StartsWith(error, prefix)) error.erase(0, std::strlen(prefix));
  }
  return error;
}

}  // namespace

namespace rotor {
namespace {

class BytesTokenizer final : public Tokenizer {
 public:
  absl::StatusOr<std::vector<int32_t>> encode(const std::string& text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }

  // Special ids decode to nothing (as SentencePiece drops control symbols).
  absl::StatusOr<std::string> decode(std::span<const int32_t> ids) const override {
    std::string text;
    text.reserve(ids.size());
    for (int32_t id : ids) {
      if (id < 0 || id >= kBytesVocabSize) {
        return absl::InvalidArgumentError(
            absl::StrCat("bytes tokenizer: id ", id, " outside [0, ", kBytesVocabSize, ")"));
      }
      if (id < 256) text.push_back(static_cast<char>(static_cast<unsigned char>(id)));
    }
    return text;
  }

  int32_t vocab_size() const override { return kBytesVocabSize; }
  int32_t bos_id() const override { return kBytesBos; }
  int32_t eos_id() const override { return kBytesEos; }
  std::string spec() const override { return "bytes"; }
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::string path) : path_(std::move(path)) {}
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;
  ~SentencePieceTokenizer() override {
    if (constructed_) processor().~SentencePieceProcessor();  // virtual: the library's
  }

  absl::Status load() {
    const std::string cannot = absl::StrCat("cannot load SentencePiece model '", path_, "': ");
    const SentencePieceLib& lib = sentencepiece_lib();
    if (lib.handle == nullptr) return absl::FailedPreconditionError(cannot + lib.error);
    // Read the file here, so that a missing, empty or foreign file gets a
    // message of its own rather than SentencePiece's internal one (which for
    // an empty file is "unk is not defined" and for anything that is not a
    // ModelProto names a line of its source).
    std::error_code ec;
    if (std::filesystem::is_directory(path_, ec)) {
      return absl::InvalidArgumentError(cannot + "a directory, not a model file");
    }
    std::ifstream in(path_, std::ios::binary);
    if (!in) return absl::NotFoundError(cannot + std::strerror(errno));
    std::ostringstream bytes;
    bytes << in.rdbuf();
    if (in.bad()) return absl::DataLossError(cannot + "read error");
    const std::string serialized = bytes.str();
    if (serialized.empty()) {
      return absl::InvalidArgumentError(cannot + "empty file, not a SentencePiece model");
    }
    lib.construct(storage_);
    constructed_ = true;
    std::string error;
    if (!sentencepiece_call(
            [&] { return processor().LoadFromSerializedProto(std::string_view(serialized)); },
            error)) {
      return absl::InvalidArgumentError(cannot + explain_load_error(serialized, error));
    }
    if (processor().GetPieceSize() <= 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("SentencePiece model '", path_, "' has no pieces"));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<int32_t>> encode(const std::string& text) const override {
    std::vector<int> ids;
    std::string error;
    if (!sentencepiece_call([&] { return processor().Encode(text, &ids); }, error)) {
      return absl::InternalError(absl::StrCat(path_, ": encode failed: ", error));
    }
    return std::vector<int32_t>(ids.begin(), ids.end());
  }

  absl::StatusOr<std::string> decode(std::span<const int32_t> ids) const override {
    const int32_t n = vocab_size();
    for (int32_t id : ids) {
      if (id < 0 || id >= n) {
        return absl::InvalidArgumentError(
            absl::StrCat(path_, ": id ", id, " outside [0, ", n, ")"));
      }
    }
    std::string text;
    const std::vector<int> int_ids(ids.begin(), ids.end());
    std::string error;
    if (!sentencepiece_call([&] { return processor().Decode(int_ids, &text); }, error)) {
      return absl::InternalError(absl::StrCat(path_, ": decode failed: ", error));
    }
    return text;
  }

  int32_t vocab_size() const override { return processor().GetPieceSize(); }
  int32_t bos_id() const override { return processor().bos_id(); }
  int32_t eos_id() const override { return processor().eos_id(); }
  std::string spec() const override { return absl::StrCat("spm:", path_); }

 private:
  sentencepiece::SentencePieceProcessor& processor() const {
    return *std::launder(reinterpret_cast<sentencepiece::SentencePieceProcessor*>(storage_));
  }

  std::string path_;
  // The processor, constructed in place by the library's constructor.
  alignas(sentencepiece::SentencePieceProcessor) mutable unsigned char storage_[sizeof(
      sentencepiece::SentencePieceProcessor)];
  bool constructed_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> make_tokenizer(const std::string& spec) {
  if (spec == "bytes") return std::make_unique<BytesTokenizer>();
  if (absl::StartsWith(spec, "spm:")) {
    std::string path = spec.substr(4);
    if (path.empty()) return absl::InvalidArgumentError("tokenizer 'spm:' needs a model path");
    auto tokenizer = std::make_unique<SentencePieceTokenizer>(std::move(path));
    ROTOR_RETURN_IF_ERROR(tokenizer->load());
    return std::unique_ptr<Tokenizer>(std::move(tokenizer));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown tokenizer '", spec, "' (expected 'bytes' or 'spm:PATH')"));
}

}  // namespace rotor
