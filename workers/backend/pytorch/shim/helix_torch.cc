// helix_torch.cc: see helix_torch.h. Built by scripts/deps.sh (make deps)
// with g++ against the headers and libraries of the pinned torch wheel.
#include "helix_torch.h"

#include <dlfcn.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <sstream>
#include <string>

#include <ATen/Parallel.h>
#include <ATen/detail/CUDAHooksInterface.h>
#include <c10/core/InferenceMode.h>
#include <torch/csrc/jit/serialization/import.h>
#include <torch/script.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/headeronly/version.h>

struct helix_torch_module {
  torch::jit::Module module;
  c10::Device device;
};

namespace {

char *dup(const std::string &s) {
  char *p = static_cast<char *>(std::malloc(s.size() + 1));
  if (p != nullptr) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

// Catch every exception and return its message. libtorch's messages carry a
// C++ backtrace after the first line; the first lines say what went wrong.
template <typename F>
char *guard(F &&f) {
  try {
    f();
    return nullptr;
  } catch (const c10::Error &e) {
    return dup(e.what_without_backtrace());
  } catch (const std::exception &e) {
    return dup(e.what());
  } catch (...) {
    return dup("unknown C++ exception");
  }
}

bool to_scalar_type(int32_t dt, at::ScalarType *out) {
  switch (dt) {
    case HELIX_TORCH_BOOL: *out = at::kBool; return true;
    case HELIX_TORCH_UINT8: *out = at::kByte; return true;
    case HELIX_TORCH_INT8: *out = at::kChar; return true;
    case HELIX_TORCH_INT16: *out = at::kShort; return true;
    case HELIX_TORCH_INT32: *out = at::kInt; return true;
    case HELIX_TORCH_INT64: *out = at::kLong; return true;
    case HELIX_TORCH_FP16: *out = at::kHalf; return true;
    case HELIX_TORCH_FP32: *out = at::kFloat; return true;
    case HELIX_TORCH_FP64: *out = at::kDouble; return true;
    case HELIX_TORCH_BF16: *out = at::kBFloat16; return true;
  }
  return false;
}

int32_t from_scalar_type(at::ScalarType t) {
  switch (t) {
    case at::kBool: return HELIX_TORCH_BOOL;
    case at::kByte: return HELIX_TORCH_UINT8;
    case at::kChar: return HELIX_TORCH_INT8;
    case at::kShort: return HELIX_TORCH_INT16;
    case at::kInt: return HELIX_TORCH_INT32;
    case at::kLong: return HELIX_TORCH_INT64;
    case at::kHalf: return HELIX_TORCH_FP16;
    case at::kFloat: return HELIX_TORCH_FP32;
    case at::kDouble: return HELIX_TORCH_FP64;
    case at::kBFloat16: return HELIX_TORCH_BF16;
    default: return 0;
  }
}

void json_string(std::ostringstream &o, const std::string &s) {
  o << '"';
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o << '\\' << c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      o << ' ';
    } else {
      o << c;
    }
  }
  o << '"';
}

void add_output(const at::Tensor &t, int idx, helix_torch_output *outs, int32_t max_outs) {
  if (idx >= max_outs) {
    throw std::runtime_error("forward() returned more than " + std::to_string(max_outs) + " tensors");
  }
  int32_t dt = from_scalar_type(t.scalar_type());
  if (dt == 0) {
    throw std::runtime_error("output " + std::to_string(idx) + " has dtype " +
                             std::string(c10::toString(t.scalar_type())) + ", which has no KServe datatype");
  }
  if (t.dim() > 16) {
    throw std::runtime_error("output " + std::to_string(idx) + " has more than 16 dimensions");
  }
  auto *held = new at::Tensor(t.to(at::kCPU).contiguous());
  helix_torch_output &o = outs[idx];
  o.dtype = dt;
  o.ndim = static_cast<int32_t>(held->dim());
  for (int64_t i = 0; i < held->dim(); i++) o.shape[i] = held->size(i);
  o.data = held->data_ptr();
  o.nbytes = static_cast<int64_t>(held->nbytes());
  o.handle = held;
}

}  // namespace

extern "C" {

int32_t helix_torch_abi(void) { return HELIX_TORCH_ABI; }

#define HELIX_STR2(x) #x
#define HELIX_STR(x) HELIX_STR2(x)
const char *helix_torch_version(void) {
  return HELIX_STR(TORCH_VERSION_MAJOR) "." HELIX_STR(TORCH_VERSION_MINOR) "." HELIX_STR(TORCH_VERSION_PATCH);
}

void helix_torch_free(void *p) { std::free(p); }

int32_t helix_torch_cuda_devices(char **reason) {
  *reason = nullptr;
  // libtorch_cuda registers the CUDA device with libtorch_cpu when it
  // loads; the shim links only libtorch_cpu so that it runs without CUDA.
  if (dlopen("libtorch_cuda.so", RTLD_NOW | RTLD_GLOBAL) == nullptr) {
    const char *e = dlerror();
    *reason = dup(std::string("libtorch_cuda.so did not load: ") + (e ? e : "unknown error"));
    return 0;
  }
  int32_t n = 0;
  char *err = guard([&] { n = static_cast<int32_t>(at::detail::getCUDAHooks().getNumGPUs()); });
  if (err != nullptr) {
    *reason = err;
    return 0;
  }
  if (n == 0) *reason = dup("libtorch_cuda loaded but CUDA reports no device");
  return n;
}

char *helix_torch_load(const char *path, int32_t device, helix_torch_module **out) {
  *out = nullptr;
  return guard([&] {
    c10::Device dev = device < 0 ? c10::Device(c10::kCPU) : c10::Device(c10::kCUDA, static_cast<c10::DeviceIndex>(device));
    torch::jit::Module loaded = torch::jit::load(path, dev);
    loaded.eval();
    // Freezing inlines the parameters as constants, which lets the graph
    // executor fold their layout (a Linear's weight is transposed once, not
    // on every call); serving never trains or reads attributes. A module
    // freezing refuses (e.g. one whose forward() mutates an attribute) is
    // served as loaded.
    try {
      loaded = torch::jit::freeze(loaded);
    } catch (const std::exception &) {
    }
    auto m = std::make_unique<helix_torch_module>(helix_torch_module{std::move(loaded), dev});
    if (m->module.find_method("forward") == c10::nullopt) {
      throw std::runtime_error("the TorchScript module has no forward() method");
    }
    *out = m.release();
  });
}

void helix_torch_unload(helix_torch_module *m) { delete m; }

char *helix_torch_signature(helix_torch_module *m, char **json) {
  *json = nullptr;
  return guard([&] {
    const c10::FunctionSchema &schema = m->module.get_method("forward").function().getSchema();
    std::ostringstream o;
    o << "{\"args\":[";
    bool first = true;
    for (const auto &a : schema.arguments()) {
      if (a.name() == "self") continue;
      if (!first) o << ',';
      first = false;
      o << "{\"name\":";
      json_string(o, a.name());
      o << ",\"type\":";
      json_string(o, a.type()->annotation_str());
      o << ",\"default\":" << (a.default_value().has_value() ? "true" : "false") << '}';
    }
    o << "],\"returns\":";
    std::string ret = "None";
    if (schema.returns().size() == 1) {
      ret = schema.returns()[0].type()->annotation_str();
    }
    json_string(o, ret);
    o << '}';
    *json = dup(o.str());
  });
}

char *helix_torch_forward(helix_torch_module *m, const helix_torch_tensor *inputs, int32_t n_inputs,
                          int32_t intra_threads, helix_torch_output *outs, int32_t max_outs,
                          int32_t *n_outs) {
  *n_outs = 0;
  int32_t filled = 0;
  char *err = guard([&] {
    // OpenMP's thread count is per OS thread and Go runs us on any of its
    // threads, so it is set on each call.
    if (intra_threads > 0 && at::get_num_threads() != intra_threads) at::set_num_threads(intra_threads);
    c10::InferenceMode inference;
    std::vector<c10::IValue> args;
    args.reserve(n_inputs);
    for (int32_t i = 0; i < n_inputs; i++) {
      const helix_torch_tensor &in = inputs[i];
      at::ScalarType st;
      if (!to_scalar_type(in.dtype, &st)) {
        throw std::runtime_error("input " + std::to_string(i) + ": unknown datatype code " + std::to_string(in.dtype));
      }
      std::vector<int64_t> shape(in.shape, in.shape + in.ndim);
      // from_blob does not copy: the caller's buffer lives through the call.
      at::Tensor t = at::from_blob(in.data, shape, at::TensorOptions().dtype(st));
      if (t.nbytes() != static_cast<size_t>(in.nbytes)) {
        throw std::runtime_error("input " + std::to_string(i) + ": " + std::to_string(in.nbytes) +
                                 " bytes for a tensor of " + std::to_string(t.nbytes()));
      }
      if (!m->device.is_cpu()) t = t.to(m->device);
      args.emplace_back(std::move(t));
    }
    c10::IValue result = m->module.forward(std::move(args));
    if (result.isTensor()) {
      add_output(result.toTensor(), filled++, outs, max_outs);
    } else if (result.isTuple()) {
      for (const auto &e : result.toTupleRef().elements()) {
        if (!e.isTensor()) throw std::runtime_error("forward() returned a tuple holding a " + e.tagKind() + ", not only tensors");
        add_output(e.toTensor(), filled++, outs, max_outs);
      }
    } else if (result.isTensorList()) {
      for (const at::Tensor &t : result.toTensorVector()) add_output(t, filled++, outs, max_outs);
    } else {
      throw std::runtime_error("forward() returned a " + result.tagKind() +
                               "; it must return a tensor, or a tuple or list of tensors");
    }
  });
  if (err != nullptr) {
    helix_torch_free_outputs(outs, filled);
    return err;
  }
  *n_outs = filled;
  return nullptr;
}

void helix_torch_free_outputs(helix_torch_output *outs, int32_t n) {
  for (int32_t i = 0; i < n; i++) {
    delete static_cast<at::Tensor *>(outs[i].handle);
    outs[i].handle = nullptr;
  }
}

}  // extern "C"
