#include "trainer/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <fstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace rotor {

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;

absl::Status bad(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", what));
}

// Element size of a safetensors dtype, 0 if unknown.
size_t element_size(const std::string& dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2},
      {"I8", 1},  {"U8", 1},  {"BOOL", 1}, {"U16", 2}, {"U32", 4}, {"U64", 8},
      {"F8_E4M3", 1}, {"F8_E5M2", 1}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// "[2, 3]", like Shape::str, for any number of dims.
std::string shape_str(const std::vector<int64_t>& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) absl::StrAppend(&out, i ? ", " : "", shape[i]);
  return out + "]";
}

const char* safetensors_dtype(DType d) {
  switch (d) {
    case DType::kF32: return "F32";
    case DType::kBF16: return "BF16";
    case DType::kF64: return "F64";
    case DType::kI32: return "I32";
    case DType::kI64: return "I64";
  }
  return "?";
}

}  // namespace

// IEEE binary16 -> float.
float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
  if (exp == 0) {
    if (mant == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400u)) {
        mant <<= 1;
        --exp;
      }
      bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | (mant << 13);
  } else {
    bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000u);
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u);  // NaN, inf
  if (abs >= 0x477ff000u) return sign | 0x7c00u;  // rounds to >= 65520: inf
  const int32_t exp = static_cast<int32_t>(abs >> 23) - 127 + 15;
  uint32_t mant = (abs & 0x7fffffu) | 0x800000u;  // 24 bits with the implicit 1
  // Bits to drop: 13 for a normal half, more for a subnormal one.
  const int shift = exp >= 1 ? 13 : 13 + 1 - exp;
  if (shift > 24) return sign;  // below half the smallest subnormal: +-0
  const uint32_t half_bit = 1u << (shift - 1), rest = mant & ((1u << shift) - 1);
  uint32_t m = mant >> shift;
  if (rest > half_bit || (rest == half_bit && (m & 1u))) ++m;  // nearest, ties to even
  // A normal value: exponent field exp, and m carries the implicit bit (which,
  // with a carry out of the mantissa, adds one to the exponent by itself).
  if (exp >= 1) return sign | static_cast<uint16_t>((static_cast<uint32_t>(exp - 1) << 10) + m);
  return sign | static_cast<uint16_t>(m);  // subnormal (a carry makes it the smallest normal)
}

struct SafetensorsFile::Mapping {
  void* addr = nullptr;
  size_t size = 0;
  ~Mapping() {
    if (addr && addr != MAP_FAILED) munmap(addr, size);
  }
};

absl::StatusOr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::NotFoundError(absl::StrCat(path, ": ", std::strerror(errno)));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    ::close(fd);
    return absl::InternalError(absl::StrCat(path, ": fstat: ", std::strerror(errno)));
  }
  SafetensorsFile f;
  f.path_ = path;
  f.map_ = std::make_shared<Mapping>();
  f.map_->size = static_cast<size_t>(st.st_size);
  if (f.map_->size < 8) {
    ::close(fd);
    return bad(path, absl::StrCat("file is ", f.map_->size, " bytes, shorter than the 8-byte header length"));
  }
  f.map_->addr = mmap(nullptr, f.map_->size, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (f.map_->addr == MAP_FAILED) return absl::InternalError(absl::StrCat(path, ": mmap: ", std::strerror(errno)));
  const uint8_t* base = static_cast<const uint8_t*>(f.map_->addr);
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | base[i];  // little-endian
  if (n > kMaxHeaderBytes || n > f.map_->size - 8) {
    return bad(path, absl::StrCat("header length ", n, " exceeds the file (", f.map_->size,
                                  " bytes) or the 100 MB limit: truncated or not a safetensors file"));
  }
  // Tensor names must be unique: JSON keeps only the last of duplicate keys,
  // so they are caught while parsing (depth 1: the header object's keys).
  std::set<std::string> names;
  std::string duplicate;
  const nlohmann::json::parser_callback_t unique_names = [&](int depth, nlohmann::json::parse_event_t event,
                                                             nlohmann::json& parsed) {
    if (depth == 1 && event == nlohmann::json::parse_event_t::key && parsed.is_string() &&
        !names.insert(parsed.get<std::string>()).second && duplicate.empty())
      duplicate = parsed.get<std::string>();
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(base + 8, base + 8 + n, unique_names);
  } catch (const nlohmann::json::exception& e) {  // parse_error; out_of_range for a number overflow
    std::string what = e.what();  // "[json.exception.parse_error.101] parse error at ..."
    if (const size_t at = what.find("] "); at != std::string::npos) what = what.substr(at + 2);
    return bad(path, absl::StrCat("header is not valid JSON: ", what));
  }
  if (!header.is_object()) return bad(path, absl::StrCat("header must be a JSON object, got ", header.type_name()));
  if (!duplicate.empty()) return bad(path, absl::StrCat("duplicate tensor name '", duplicate, "' in the header"));
  f.data_ = base + 8 + n;
  const uint64_t buffer = f.map_->size - 8 - n;
  for (auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) return bad(path, "__metadata__ must be an object of strings");
      for (auto& [k, v] : value.items()) {
        if (!v.is_string()) return bad(path, absl::StrCat("__metadata__.", k, " must be a string"));
        f.metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = absl::StrCat("tensor '", name, "': ");
    if (!value.is_object() || !value.contains("dtype") || !value.contains("shape") ||
        !value.contains("data_offsets")) {
      return bad(path, where + "needs dtype, shape and data_offsets");
    }
    SafetensorsEntry e;
    e.name = name;
    if (!value["dtype"].is_string()) return bad(path, where + "dtype must be a string");
    e.dtype = value["dtype"].get<std::string>();
    const size_t esize = element_size(e.dtype);
    if (esize == 0) return bad(path, where + "unknown dtype '" + e.dtype + "'");
    const auto& shape = value["shape"];
    const auto& offs = value["data_offsets"];
    if (!shape.is_array()) return bad(path, where + "shape must be a list");
    uint64_t numel = 1;
    bool overflow = false;
    for (const auto& s : shape) {
      if (!s.is_number_integer() || s.get<int64_t>() < 0) return bad(path, where + "shape entries must be integers >= 0");
      e.shape.push_back(s.get<int64_t>());
      overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(s.get<int64_t>()), &numel);
    }
    // (Unchecked, a shape such as [2^32, 2^32] wrapped to 0 elements and
    // passed the size check below with empty data_offsets.)
    uint64_t nbytes = 0;
    overflow |= __builtin_mul_overflow(numel, static_cast<uint64_t>(esize), &nbytes);
    if (overflow) return bad(path, absl::StrCat(where, "shape ", shape_str(e.shape), " of ", e.dtype,
                                                " has more bytes than fit in 64 bits"));
    if (!offs.is_array() || offs.size() != 2 || !offs[0].is_number_unsigned() ||
        !offs[1].is_number_unsigned()) {
      return bad(path, where + "data_offsets must be [begin, end] with integers >= 0");
    }
    e.begin = offs[0].get<uint64_t>();
    e.end = offs[1].get<uint64_t>();
    if (e.end < e.begin || e.end - e.begin != nbytes) {
      return bad(path, absl::StrCat(where, "data_offsets [", e.begin, ", ", e.end, ") hold ",
                                    e.end < e.begin ? 0 : e.end - e.begin, " bytes, shape and ",
                                    e.dtype, " need ", nbytes));
    }
    if (e.end > buffer) {
      return bad(path, absl::StrCat(where, "data_offsets end ", e.end, " is past the data (",
                                    buffer, " bytes): the file is truncated"));
    }
    f.entries_.push_back(std::move(e));
  }
  std::vector<const SafetensorsEntry*> by_offset;
  for (const auto& e : f.entries_) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(), [](auto* a, auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expect = 0;
  for (const SafetensorsEntry* e : by_offset) {
    if (e->begin != expect) {
      return bad(path, absl::StrCat("tensor '", e->name, "' starts at ", e->begin, " but the previous one ends at ",
                                    expect, e->begin < expect ? ": overlapping offsets" : ": gap in the data"));
    }
    expect = e->end;
  }
  if (expect != buffer) {
    return bad(path, absl::StrCat("tensors cover ", expect, " bytes but the data is ", buffer,
                                  " bytes: trailing bytes after the last tensor"));
  }
  return f;
}

const SafetensorsEntry* SafetensorsFile::find(const std::string& name) const {
  for (const auto& e : entries_)
    if (e.name == name) return &e;
  return nullptr;
}

absl::Status SafetensorsFile::read_into(const std::string& name, const Tensor& dst,
                                        bool allow_reshape) const {
  const SafetensorsEntry* e = find(name);
  if (!e) return absl::NotFoundError(absl::StrCat(path_, ": no tensor '", name, "'"));
  int64_t numel = 1;  // no overflow: open() checked numel * element size
  for (int64_t s : e->shape) numel *= s;
  // Compared as vectors: a tensor of the file may have more than kMaxDims dims
  // (Shape(e->shape) aborted on those; read them with allow_reshape).
  const bool same_dims = e->shape == dst.shape().vec();
  if (numel != dst.numel() || (!allow_reshape && !same_dims)) {
    return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "' has shape ",
                                                   shape_str(e->shape), ", expected ", dst.shape().str()));
  }
  const uint8_t* src = data_ + e->begin;
  const bool dst_float = dst.dtype() == DType::kF32 || dst.dtype() == DType::kF64 || dst.dtype() == DType::kBF16;
  if (e->dtype == "F32" || e->dtype == "BF16" || e->dtype == "F64") {
    if (!dst_float) return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "' is ", e->dtype, ", destination is ", dtype_name(dst.dtype())));
    const DType sd = e->dtype == "F32" ? DType::kF32 : e->dtype == "BF16" ? DType::kBF16 : DType::kF64;
    // Files from writers that do not pad the header can leave data unaligned:
    // copy such bytes to aligned memory before typed access.
    Tensor source = Tensor::wrap(const_cast<uint8_t*>(src), dst.shape(), sd);
    if (reinterpret_cast<uintptr_t>(src) % dtype_size(sd) != 0) {
      source = Tensor::empty(dst.shape(), sd);
      std::memcpy(source.raw(), src, source.nbytes());
    }
    dst.copy_from(source);
    return absl::OkStatus();
  }
  if (e->dtype == "F16") {
    if (!dst_float) return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "' is F16, destination is ", dtype_name(dst.dtype())));
    Tensor tmp = Tensor::empty(dst.shape(), DType::kF32);
    for (int64_t i = 0; i < numel; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      tmp.data<float>()[i] = half_to_float(h);
    }
    dst.copy_from(tmp);
    return absl::OkStatus();
  }
  if ((e->dtype == "I32" && dst.dtype() == DType::kI32) || (e->dtype == "I64" && dst.dtype() == DType::kI64)) {
    dst.copy_from(Tensor::wrap(const_cast<uint8_t*>(src), dst.shape(), dst.dtype()));
    return absl::OkStatus();
  }
  return absl::InvalidArgumentError(absl::StrCat(path_, ": tensor '", name, "' of dtype ", e->dtype,
                                                 " cannot be read into ", dtype_name(dst.dtype())));
}

absl::Status write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                               const std::map<std::string, std::string>& metadata,
                               SafetensorsFloat floats) {
  // out: the stored dtype; f16 marks F16, which has no Tensor dtype (out is then kBF16, the
  // same size, and only used for sizes).
  struct Item {
    const NamedTensor* t;
    DType out;
    bool f16 = false;
  };
  std::vector<Item> items;
  for (const NamedTensor& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__") {
      return absl::InvalidArgumentError(absl::StrCat(path, ": invalid tensor name '", t.name, "'"));
    }
    const bool is_float = t.tensor.dtype() == DType::kF32 || t.tensor.dtype() == DType::kBF16 ||
                          t.tensor.dtype() == DType::kF64;
    Item it{&t, t.tensor.dtype()};
    if (is_float && floats == SafetensorsFloat::kF32) it.out = DType::kF32;
    if (is_float && floats == SafetensorsFloat::kBF16) it.out = DType::kBF16;
    if (is_float && floats == SafetensorsFloat::kF16) {
      it.out = DType::kBF16;
      it.f16 = true;
    }
    items.push_back(it);
  }
  std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
    if (dtype_size(a.out) != dtype_size(b.out)) return dtype_size(a.out) > dtype_size(b.out);
    return a.t->name < b.t->name;
  });
  // F16: converted up front, so that a value out of its range fails before any write.
  std::map<const NamedTensor*, std::vector<uint16_t>> halves;
  for (const Item& it : items) {
    if (!it.f16) continue;
    Tensor f32 = it.t->tensor.to(Device::cpu());
    if (f32.dtype() != DType::kF32) {
      f32 = Tensor::empty(it.t->tensor.shape(), DType::kF32);
      f32.copy_from(it.t->tensor);
    }
    std::vector<uint16_t>& h = halves[it.t];
    h.resize(static_cast<size_t>(f32.numel()));
    const float* src = f32.data<float>();
    for (size_t i = 0; i < h.size(); ++i) {
      h[i] = float_to_half(src[i]);
      if ((h[i] & 0x7c00u) == 0x7c00u && std::isfinite(src[i])) {
        return absl::OutOfRangeError(absl::StrCat(path, ": tensor '", it.t->name, "' element ", i,
                                                  " = ", src[i], " is beyond the F16 range (65504)"));
      }
    }
  }
  nlohmann::ordered_json header;
  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta["format"] = "pt";
  for (const auto& [k, v] : metadata) meta[k] = v;
  header["__metadata__"] = meta;
  uint64_t offset = 0;
  for (const Item& it : items) {
    const uint64_t bytes = static_cast<uint64_t>(it.t->tensor.numel()) * dtype_size(it.out);
    if (header.contains(it.t->name)) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": duplicate tensor name '", it.t->name, "'"));
    }
    header[it.t->name] = {{"dtype", it.f16 ? "F16" : safetensors_dtype(it.out)},
                          {"shape", it.t->tensor.shape().vec()},
                          {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned
  const std::string tmp = path + ".tmp";
  errno = 0;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return absl::PermissionDeniedError(absl::StrCat(tmp, ": cannot open for writing"));
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(len), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const Item& it : items) {
      if (it.f16) {
        const std::vector<uint16_t>& h = halves.at(it.t);
        std::vector<uint8_t> bytes(h.size() * 2);
        for (size_t i = 0; i < h.size(); ++i) {  // little-endian
          bytes[2 * i] = static_cast<uint8_t>(h[i]);
          bytes[2 * i + 1] = static_cast<uint8_t>(h[i] >> 8);
        }
        out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
        continue;
      }
      Tensor src = it.t->tensor.to(Device::cpu());  // a device tensor: copied to the host
      if (src.dtype() != it.out) {
        Tensor converted = Tensor::empty(src.shape(), it.out);
        converted.copy_from(src);
        src = converted;
      }
      out.write(static_cast<const char*>(src.raw()), static_cast<std::streamsize>(src.nbytes()));
    }
    out.flush();
    if (!out) {
      // errno of the failed write(2): "No space left on device", "File too large"...
      const std::string why = errno ? std::strerror(errno) : "disk full?";
      out.close();
      std::error_code ignored;
      std::filesystem::remove(tmp, ignored);  // a partial file frees its space
      return absl::DataLossError(absl::StrCat(tmp, ": write failed (", why, ")"));
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return absl::InternalError(absl::StrCat("rename ", tmp, " -> ", path, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace rotor
