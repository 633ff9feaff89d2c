// byol's native kernels for TensorFlow.js on oneDNN: convolution forward and both gradients, and batched
// matrix products. Tensors arrive as Float32Arrays in tfjs's layouts (NHWC activations, HWIO filters, row-major
// matrices); primitives are cached by shape, and filters are reordered to the layout oneDNN prefers.
#include <napi.h>
#include <omp.h>

#include <oneapi/dnnl/dnnl.hpp>
#include <memory>
#include <sstream>
#include <string>
#include <list>
#include <unordered_map>
#include <unistd.h>
#include <type_traits>
#include <vector>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <chrono>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <functional>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

dnnl::engine& Engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}
dnnl::stream& Stream() {
  static dnnl::stream s(Engine());
  return s;
}

float* Data(const Napi::Value& v, size_t expected, const char* what) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be a Float32Array");
  }
  auto a = v.As<Napi::Float32Array>();
  if (a.ElementLength() != expected) {
    std::ostringstream m;
    m << what << " has " << a.ElementLength() << " values, expected " << expected;
    throw Napi::RangeError::New(v.Env(), m.str());
  }
  return a.Data();
}

std::vector<int64_t> Ints(const Napi::Value& v, size_t n, const char* what) {
  if (!v.IsArray() || v.As<Napi::Array>().Length() != n) {
    throw Napi::TypeError::New(v.Env(), std::string(what) + " must be an array of " + std::to_string(n) + " integers");
  }
  auto a = v.As<Napi::Array>();
  std::vector<int64_t> out(n);
  for (uint32_t i = 0; i < n; i++) out[i] = a.Get(i).As<Napi::Number>().Int64Value();
  return out;
}

int64_t Prod(const std::vector<int64_t>& d) {
  int64_t p = 1;
  for (auto x : d) p *= x;
  return p;
}

// bfloat16 storage of activations (bf16 mode): round to nearest even, as oneDNN's conversions (so a convolution reading
// a stored bf16 tensor sees exactly what it would have converted itself); NaN stays a quiet NaN.
inline uint16_t ToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet = (u >> 16) | 0x40u;
  return uint16_t((u & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);  // a select, not a branch: the loops vectorize
}
inline float FromBf16(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// n floats to bf16. With AVX512-BF16 (oneDNN's own conversion instruction, round to nearest even) 16 at a time; the
// portable loop otherwise (this file is built for the baseline ISA, where it is about twice as slow).
#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bf16,avx512vl"))) void ToBf16RowAvx512(const float* s, uint16_t* d, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256bh h = _mm512_cvtneps_pbh(_mm512_loadu_ps(s + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + i), reinterpret_cast<__m256i&>(h));
  }
  for (; i < n; i++) d[i] = ToBf16(s[i]);
}
const bool kBf16Cvt = __builtin_cpu_supports("avx512bf16");
#else
const bool kBf16Cvt = false;
#endif
void ToBf16Row(const float* s, uint16_t* d, int64_t n) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (kBf16Cvt) return ToBf16RowAvx512(s, d, n);
#endif
  for (int64_t i = 0; i < n; i++) d[i] = ToBf16(s[i]);
}

// A tensor of n values stored as bf16 arrives as a Float32Array of ⌈n/2⌉ elements (two values per element).
uint16_t* PackedData(const Napi::Value& v, size_t n, const char* what) {
  return reinterpret_cast<uint16_t*>(Data(v, (n + 1) / 2, what));
}
// Reads value i of x stored as T (float, or uint16_t holding bf16).
template <typename T>
inline float Load(const T* x, int64_t i) {
  if constexpr (std::is_same_v<T, uint16_t>) return FromBf16(x[i]);
  else return x[i];
}
template <typename T>
inline void Store(T* y, int64_t i, float v) {
  if constexpr (std::is_same_v<T, uint16_t>) y[i] = ToBf16(v);
  else y[i] = v;
}

// Calls f with the Float32Array `v` of n values as it is stored: const uint16_t* (bf16, two per element) when
// `packed`, else const float* — one line per operand instead of a branch with two casts at each kernel.
template <typename F>
void WithStored(const Napi::Value& v, int64_t n, bool packed, const char* what, F&& f) {
  if (packed) f(static_cast<const uint16_t*>(PackedData(v, n, what)));
  else f(static_cast<const float*>(Data(v, n, what)));
}

// bf16 mode: convolutions and matrix products take their inputs in bfloat16 (converted on the way in; AVX512-BF16 /
// AMX kernels) and give float32 results; weights, gradients and everything else stay float32.
bool g_bf16 = false;
dt Low() { return g_bf16 ? dt::bf16 : dt::f32; }

// One convolution geometry: x [N,H,W,C], w [KH,KW,C,O], y [N,OH,OW,O], strides, dilations (tfjs: 1 = none),
// padding top/left and bottom/right.
struct ConvGeom {
  std::vector<int64_t> x, w, y, strides, dil, padTL, padBR;
  std::string Key(const char* op) const {
    std::ostringstream k;
    k << op << (g_bf16 ? ",bf16" : ",f32");
    for (auto* v : {&x, &w, &y, &strides, &dil, &padTL, &padBR})
      for (auto e : *v) k << ',' << e;
    return k.str();
  }
  memory::desc Src(dt t = dt::f32) const { return memory::desc({x[0], x[3], x[1], x[2]}, t, tag::nhwc); }
  memory::desc Dst(dt t = dt::f32) const { return memory::desc({y[0], y[3], y[1], y[2]}, t, tag::nhwc); }
  memory::desc UserWeights() const { return memory::desc({w[3], w[2], w[0], w[1]}, dt::f32, tag::hwio); }
  memory::desc AnyWeights(dt t = dt::f32) const { return memory::desc({w[3], w[2], w[0], w[1]}, t, tag::any); }
  memory::dims Strides() const { return {strides[0], strides[1]}; }
  memory::dims Dil() const { return {dil[0] - 1, dil[1] - 1}; }
  memory::dims PadL() const { return {padTL[0], padTL[1]}; }
  memory::dims PadR() const { return {padBR[0], padBR[1]}; }
};

ConvGeom ReadGeom(const Napi::CallbackInfo& info, int at) {
  ConvGeom g;
  g.x = Ints(info[at], 4, "xShape");
  g.w = Ints(info[at + 1], 4, "filterShape");
  g.y = Ints(info[at + 2], 4, "yShape");
  g.strides = Ints(info[at + 3], 2, "strides");
  g.dil = Ints(info[at + 4], 2, "dilations");
  g.padTL = Ints(info[at + 5], 2, "padTopLeft");
  g.padBR = Ints(info[at + 6], 2, "padBottomRight");
  return g;
}

// ---- oneDNN 2.x / 3.x: the only places the two APIs differ. 3.x builds primitive descriptors directly from their
// arguments (engine first) where 2.x went through an operation descriptor, and reads a memory descriptor's dims and
// strides through getters. Every kernel calls these, so each keeps one code path.
using dims = memory::dims;
using conv_fwd_pd = dnnl::convolution_forward::primitive_desc;
using conv_bwd_data_pd = dnnl::convolution_backward_data::primitive_desc;
using conv_bwd_weights_pd = dnnl::convolution_backward_weights::primitive_desc;
constexpr auto kConv = dnnl::algorithm::convolution_direct;

conv_fwd_pd ConvForwardPd(const memory::desc& src, const memory::desc& w, const memory::desc& dst, const dims& strides, const dims& dil,
                          const dims& padL, const dims& padR) {
#if DNNL_VERSION_MAJOR >= 3
  return conv_fwd_pd(Engine(), dnnl::prop_kind::forward_training, kConv, src, w, dst, strides, dil, padL, padR);
#else
  return conv_fwd_pd(dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, kConv, src, w, dst, strides, dil, padL, padR), Engine());
#endif
}

conv_bwd_data_pd ConvBackwardDataPd(const memory::desc& diffSrc, const memory::desc& w, const memory::desc& diffDst, const dims& strides,
                                    const dims& dil, const dims& padL, const dims& padR, const conv_fwd_pd& hint) {
#if DNNL_VERSION_MAJOR >= 3
  return conv_bwd_data_pd(Engine(), kConv, diffSrc, w, diffDst, strides, dil, padL, padR, hint);
#else
  return conv_bwd_data_pd(dnnl::convolution_backward_data::desc(kConv, diffSrc, w, diffDst, strides, dil, padL, padR), Engine(), hint);
#endif
}

conv_bwd_weights_pd ConvBackwardWeightsPd(const memory::desc& src, const memory::desc& diffW, const memory::desc& diffDst, const dims& strides,
                                          const dims& dil, const dims& padL, const dims& padR, const conv_fwd_pd& hint) {
#if DNNL_VERSION_MAJOR >= 3
  return conv_bwd_weights_pd(Engine(), kConv, src, diffW, diffDst, strides, dil, padL, padR, hint);
#else
  return conv_bwd_weights_pd(dnnl::convolution_backward_weights::desc(kConv, src, diffW, diffDst, strides, dil, padL, padR), Engine(), hint);
#endif
}

dnnl::matmul::primitive_desc MatmulPd(const memory::desc& a, const memory::desc& b, const memory::desc& c) {
#if DNNL_VERSION_MAJOR >= 3
  return dnnl::matmul::primitive_desc(Engine(), a, b, c);
#else
  return dnnl::matmul::primitive_desc(dnnl::matmul::desc(a, b, c), Engine());
#endif
}

// A plain (strided) memory descriptor's dims and strides.
dims DimsOf(const memory::desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  return md.get_dims();
#else
  return md.dims();
#endif
}
dims StridesOf(const memory::desc& md) {
#if DNNL_VERSION_MAJOR >= 3
  return md.get_strides();
#else
  return dims(md.data.format_desc.blocking.strides, md.data.format_desc.blocking.strides + md.data.ndims);
#endif
}
// ---- end of the version shim.

conv_fwd_pd ForwardPd(const ConvGeom& g) {
  return ConvForwardPd(g.Src(Low()), g.AnyWeights(Low()), g.Dst(), g.Strides(), g.Dil(), g.PadL(), g.PadR());
}

struct CachedConv {
  dnnl::primitive prim;
  memory::desc weights;  // the layout the primitive wants for its weights (or diff weights)
  memory::desc in1, in2;  // what it wants for its other inputs (bf16 in bf16 mode)
  // Buffers for converted inputs, allocated on first use and kept with the primitive: calls run one at a time, and a
  // fresh multi-megabyte buffer per call costs page faults (at batch 256 they made bf16 slower than fp32).
  memory wBuf, in1Buf, in2Buf;
  size_t bytes = 0;  // of those buffers, as last counted
};

size_t BufferBytes(const CachedConv& c) {
  size_t n = 0;
  for (const memory* m : {&c.wBuf, &c.in1Buf, &c.in2Buf})
    if (*m) n += m->get_desc().get_size();
  return n;
}

size_t EnvSize(const char* name, size_t fallback) {
  const char* v = std::getenv(name);
  if (!v || !*v) return fallback;
  char* end = nullptr;
  unsigned long long x = std::strtoull(v, &end, 10);
  return end && *end == '\0' ? size_t(x) : fallback;
}

// The machine's physical memory (16 GiB where the system does not say), for the caches' default bounds.
size_t MachineBytes() {
  long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? size_t(pages) * size_t(size) : size_t(16) << 30;
}

// Primitives by shape, least recently used out first: a process that meets many shapes (evaluation chunks, last
// partial batches, images of many sizes) keeps at most `limit` primitives and `byteLimit` bytes of their conversion
// buffers, instead of one set per shape for its whole life. A training step's shapes recur every step, so the
// defaults (512 primitives; a quarter of the machine's memory) hold a whole step of the largest built-in encoders.
class PrimitiveCache {
 public:
  PrimitiveCache() {
    size_t quarter = MachineBytes() / 4;
    limit_ = std::max<size_t>(1, EnvSize("BYOL_NATIVE_CACHE", 512));
    byteLimit_ = EnvSize("BYOL_NATIVE_CACHE_MB", quarter >> 20) << 20;
    // oneDNN keeps primitives (their JIT code, scratchpads) in a cache of its own too: the same bound.
    dnnl::set_primitive_cache_capacity(int(std::min<size_t>(limit_, 1 << 30)));
  }
  // The entry for `key`, marked most recently used; null when absent.
  CachedConv* Find(const std::string& key) {
    auto it = index_.find(key);
    if (it == index_.end()) return nullptr;
    order_.splice(order_.begin(), order_, it->second);
    return &it->second->second;
  }
  CachedConv* Insert(const std::string& key, CachedConv entry) {
    order_.emplace_front(key, std::move(entry));
    index_[key] = order_.begin();
    Evict(&order_.front().second);
    return &order_.front().second;
  }
  // After a call that may have allocated `used`'s buffers: counts them, then evicts the least recently used others.
  void Account(CachedConv* used) {
    size_t now = BufferBytes(*used);
    bytes_ += now - used->bytes;
    used->bytes = now;
    Evict(used);
  }
  void SetLimits(size_t entries, size_t bytes) {
    limit_ = std::max<size_t>(1, entries);
    byteLimit_ = bytes;
    dnnl::set_primitive_cache_capacity(int(std::min<size_t>(limit_, 1 << 30)));
    Evict(order_.empty() ? nullptr : &order_.front().second);
  }
  size_t Size() const { return order_.size(); }
  size_t Bytes() const { return bytes_; }
  size_t Limit() const { return limit_; }
  size_t ByteLimit() const { return byteLimit_; }

 private:
  void Evict(const CachedConv* keep) {
    while (!order_.empty() && (order_.size() > limit_ || bytes_ > byteLimit_) && &order_.back().second != keep) {
      bytes_ -= order_.back().second.bytes;
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }
  std::list<std::pair<std::string, CachedConv>> order_;
  std::unordered_map<std::string, std::list<std::pair<std::string, CachedConv>>::iterator> index_;
  size_t bytes_ = 0, limit_ = 512, byteLimit_ = 0;
};

// `user` as the primitive wants it: itself when the descriptions agree, else converted (layout or bf16) into `buf`.
memory As(const memory::desc& want, const memory& user, memory& buf) {
  if (want == user.get_desc()) return user;
  if (!buf) buf = memory(want, Engine());
  dnnl::reorder(user, buf).execute(Stream(), const_cast<memory&>(user), buf);
  return buf;
}
PrimitiveCache cache;

// Converted copies of inputs that recur within a step, by the tensor they came from. A training step reads each
// filter in several calls (both views forward, both backward-data passes) and, in bf16 mode, each output gradient in
// two (backward data, then backward weights); converting once per tensor instead of once per call saves ~40 ms of a
// 1 s ResNet-18 bf16 step. JavaScript names a tensor by a token that is never reused (its data never changes) and
// forgets it when the tensor is disposed; a byte bound (oldest out first) covers tensors that live long.
class ConvertedCache {
 public:
  ConvertedCache() {
    size_t eighth = MachineBytes() / 8;
    byteLimit_ = EnvSize("BYOL_NATIVE_CONVERTED_MB", eighth >> 20) << 20;
  }
  // `user` as `want`: itself when they agree; else the copy kept for `token` (made on first use); token 0: into `buf`.
  // `kind` tells apart copies of different contents made from the same tensor (a mirrored filter, kMirrored, may have
  // the same layout as the plain one).
  memory Get(const memory::desc& want, const memory& user, memory& buf, double token, int kind = 0) {
    if (want == user.get_desc()) return user;
    if (!Keeps(token)) return As(want, user, buf);
    if (const memory* kept = Find(want, token, kind)) return *kept;
    memory m(want, Engine());
    dnnl::reorder(user, m).execute(Stream(), const_cast<memory&>(user), m);
    auto& copies = byToken_[token];
    if (copies.empty()) order_.push_back(token);
    copies.push_back({kind, m});
    bytes_ += want.get_size();
    while (bytes_ > byteLimit_ && order_.size() > 1) Forget(order_.front());
    return m;
  }
  // Whether copies for `token` are kept at all.
  bool Keeps(double token) const { return token > 0 && byteLimit_ > 0; }
  // The copy of `kind` kept for `token` in layout `want`, or null.
  const memory* Find(const memory::desc& want, double token, int kind) const {
    auto it = byToken_.find(token);
    if (it == byToken_.end()) return nullptr;
    for (auto& [k, m] : it->second)
      if (k == kind && m.get_desc() == want) return &m;
    return nullptr;
  }
  void Forget(double token) {
    auto it = byToken_.find(token);
    if (it == byToken_.end()) return;
    for (auto& [k, m] : it->second) bytes_ -= m.get_desc().get_size();
    byToken_.erase(it);
    order_.erase(std::find(order_.begin(), order_.end(), token));
  }
  void SetLimit(size_t bytes) {
    byteLimit_ = bytes;
    while (bytes_ > byteLimit_ && !order_.empty()) Forget(order_.front());
  }
  size_t Tokens() const { return byToken_.size(); }
  size_t Bytes() const { return bytes_; }

 private:
  std::unordered_map<double, std::vector<std::pair<int, memory>>> byToken_;
  std::list<double> order_;  // tokens, oldest first
  size_t bytes_ = 0, byteLimit_ = 0;
};
ConvertedCache converted;

// An optional trailing token argument (0 when absent or not a number).
double TokenArg(const Napi::CallbackInfo& info, size_t at) {
  return info.Length() > at && info[at].IsNumber() ? info[at].As<Napi::Number>().DoubleValue() : 0;
}

void MatMulInto(const float* a, const float* b, float* c, int64_t ba, int64_t bb, int64_t m, int64_t k, int64_t n, bool ta, bool tb);

// A stride-1, undilated convolution has a mirror image: input and output trade places, the filter turns 180° in
// space with its input and output channels exchanged (F[kh][kw][o][c] = W[KH−1−kh][KW−1−kw][c][o]) and each padding p
// becomes K − 1 − p. The mirror's backward-data pass computes the original's forward, and its forward the original's
// backward-data pass, so each of the two can run on whichever of oneDNN's two kernels is faster for the shape. Here
// (oneDNN 2.6, AVX-512) the backward-data kernel is the faster one for ResNet-18's 4×4×512 layer (fp32 11.4 → 10.1 ms,
// bf16 6.2 → 3.8 ms at batch 64) and the forward kernel for its larger images (fp32 32×32×64: 11.7 → 10.0 ms).
bool Mirrorable(const ConvGeom& g) {
  if (g.strides[0] != 1 || g.strides[1] != 1 || g.dil[0] != 1 || g.dil[1] != 1) return false;
  for (int i = 0; i < 2; i++)
    if (g.padTL[i] < 0 || g.padBR[i] < 0 || g.padTL[i] > g.w[i] - 1 || g.padBR[i] > g.w[i] - 1) return false;
  return true;
}

ConvGeom Mirror(const ConvGeom& g) {
  ConvGeom m = g;
  m.x = g.y;
  m.y = g.x;
  m.w = {g.w[0], g.w[1], g.w[3], g.w[2]};
  m.padTL = {g.w[0] - 1 - g.padTL[0], g.w[1] - 1 - g.padTL[1]};
  m.padBR = {g.w[0] - 1 - g.padBR[0], g.w[1] - 1 - g.padBR[1]};
  return m;
}

// The mirror's filter with its taps in mirrored order (tap t is the original's tap KH·KW − 1 − t, a C×O block copied
// as it is): read with the mirror's input and output channels exchanged (strides of an HWOI layout), it is the
// mirrored filter, and oneDNN's reorder into its own layout does the transposition.
void MirrorTaps(const ConvGeom& g, const float* w, float* f) {
  const int64_t taps = g.w[0] * g.w[1], block = g.w[2] * g.w[3];
#pragma omp parallel for schedule(static) if (taps * block > 65536)
  for (int64_t t = 0; t < taps; t++) std::memcpy(f + t * block, w + (taps - 1 - t) * block, size_t(block) * sizeof(float));
}

constexpr int kMirrored = 1;  // ConvertedCache kind of a mirrored filter

// A convolution's filter: the tensor's HWIO data and token, and whether the primitive runs on the mirror of `orig`.
struct Filter {
  float* w;
  double token;
  const ConvGeom* mirrorOf = nullptr;
};

// The filter as the primitive wants it (`want`, for geometry g): converted (and kept per token), mirrored first where
// the primitive runs on the mirror — a mirrored copy is made once per tensor, like any other conversion.
memory Weights(const memory::desc& want, const ConvGeom& g, const Filter& f, memory& buf) {
  if (!f.mirrorOf) return converted.Get(want, memory(g.UserWeights(), Engine(), f.w), buf, f.token);
  if (const memory* kept = converted.Find(want, f.token, kMirrored)) return *kept;
  static std::vector<float> scratch;  // calls run one at a time; grown to the largest filter seen
  if (scratch.size() < size_t(Prod(g.w))) scratch.resize(size_t(Prod(g.w)));
  MirrorTaps(g, f.w, scratch.data());
  const int64_t O = g.w[3], I = g.w[2];  // the mirror's output and input channels
  memory user(memory::desc({O, I, g.w[0], g.w[1]}, dt::f32, dims{I, 1, g.w[1] * O * I, O * I}), Engine(), scratch.data());
  // Always a copy (never the scratch itself, which the next mirrored filter overwrites), kept per token when allowed.
  if (!converted.Keeps(f.token) || want == user.get_desc()) {
    if (!buf || buf.get_desc() != want) buf = memory(want, Engine());
    dnnl::reorder(user, buf).execute(Stream(), user, buf);
    return buf;
  }
  return converted.Get(want, user, buf, f.token, kMirrored);
}

// The direct (oneDNN convolution) forward; x float32 or stored as bf16 (xPacked), y written so (yPacked). xToken names
// x's tensor where a converted copy of it may serve other calls (0: none).
void ForwardDirect(const ConvGeom& g, void* x, void* y, const Filter& f, bool xPacked = false, bool yPacked = false, double xToken = 0) {
  std::string key = g.Key(yPacked ? "fwd_bf16_out" : "fwd");
  CachedConv* c = cache.Find(key);
  if (!c) {
    auto pd = yPacked ? ConvForwardPd(g.Src(Low()), g.AnyWeights(Low()), g.Dst(dt::bf16), g.Strides(), g.Dil(), g.PadL(), g.PadR()) : ForwardPd(g);
    c = cache.Insert(key, CachedConv{dnnl::convolution_forward(pd), pd.weights_desc(), pd.src_desc(), {}});
  }
  memory src(g.Src(xPacked ? dt::bf16 : dt::f32), Engine(), x), dst(g.Dst(yPacked ? dt::bf16 : dt::f32), Engine(), y);
  memory wm = Weights(c->weights, g, f, c->wBuf);
  memory sm = converted.Get(c->in1, src, c->in1Buf, xToken);
  c->prim.execute(Stream(), {{DNNL_ARG_SRC, sm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DST, dst}});
  Stream().wait();
  cache.Account(c);
}

// The direct backward-data pass: dx from dy (float32 or stored as bf16: dyPacked; dyToken as xToken above), dx
// written as float32 or, with dxPacked, as bf16.
void BackwardDataDirect(const ConvGeom& g, void* dy, void* dx, const Filter& f, bool dyPacked = false, double dyToken = 0, bool dxPacked = false) {
  std::string key = g.Key(dxPacked ? "bwd_data_bf16_out" : "bwd_data");
  CachedConv* c = cache.Find(key);
  if (!c) {
    auto pd = ConvBackwardDataPd(g.Src(dxPacked ? dt::bf16 : dt::f32), g.AnyWeights(Low()), g.Dst(Low()), g.Strides(), g.Dil(), g.PadL(), g.PadR(), ForwardPd(g));
    c = cache.Insert(key, CachedConv{dnnl::convolution_backward_data(pd), pd.weights_desc(), pd.diff_dst_desc(), {}});
  }
  memory ddst(g.Dst(dyPacked ? dt::bf16 : dt::f32), Engine(), dy), dsrc(g.Src(dxPacked ? dt::bf16 : dt::f32), Engine(), dx);
  memory wm = Weights(c->weights, g, f, c->wBuf);
  memory dm = converted.Get(c->in1, ddst, c->in1Buf, dyToken);
  c->prim.execute(Stream(), {{DNNL_ARG_DIFF_DST, dm}, {DNNL_ARG_WEIGHTS, wm}, {DNNL_ARG_DIFF_SRC, dsrc}});
  Stream().wait();
  cache.Account(c);
}

// The same forward as one matrix product: the input's patches as rows (im2col, [N·OH·OW, KH·KW·C]) times the HWIO
// filter read as [KH·KW·C, O] gives the NHWC output directly. oneDNN 2.6's only NHWC fp32 kernel for small images
// (brgconv) runs ResNet-18's 4×4×512 3×3 convolution at ~250-280 GFLOP/s here, where the same product as a matmul runs
// at ~400 (17-19 ms against 12 + 1 for the patches, ×12 per step).
std::vector<float>& PatchScratch() {
  static std::vector<float> v;  // calls run one at a time; grown to the largest patch matrix seen, then reused
  return v;
}

void ForwardGemm(const ConvGeom& g, const float* x, const float* w, float* y) {
  const int64_t H = g.x[1], W = g.x[2], C = g.x[3], KH = g.w[0], KW = g.w[1], OH = g.y[1], OW = g.y[2];
  const int64_t rows = g.y[0] * OH * OW, K = KH * KW * C;
  std::vector<float>& scratch = PatchScratch();
  if (scratch.size() < size_t(rows * K)) scratch.resize(size_t(rows * K));
  float* col = scratch.data();
#pragma omp parallel for schedule(static) if (rows * K > 32768)
  for (int64_t r = 0; r < rows; r++) {
    const int64_t n = r / (OH * OW), oy = (r / OW) % OH, ox = r % OW;
    float* dst = col + r * K;
    for (int64_t ky = 0; ky < KH; ky++) {
      const int64_t iy = oy * g.strides[0] - g.padTL[0] + ky * g.dil[0];
      for (int64_t kx = 0; kx < KW; kx++, dst += C) {
        const int64_t ix = ox * g.strides[1] - g.padTL[1] + kx * g.dil[1];
        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
          std::memset(dst, 0, size_t(C) * sizeof(float));
        else
          std::memcpy(dst, x + ((n * H + iy) * W + ix) * C, size_t(C) * sizeof(float));
      }
    }
  }
  MatMulInto(col, w, y, 1, 1, rows, K, g.w[3], false, false);
}

// How a convolution's forward or backward-data pass runs: oneDNN's own kernel for it (direct), the matrix product
// (forward only), or the other pass of the mirror. Modes, each: 0 never, 1 wherever it applies (tests), 2 (default)
// tuned per shape — BYOL_NATIVE_CONV_GEMM / BYOL_NATIVE_CONV_MIRROR = 0 or 1 at load, or setConvGemm / setConvMirror.
enum Way : int { kDirect = 0, kGemm = 1, kMirror = 2 };
int ModeFromEnv(const char* name) {
  const char* v = std::getenv(name);
  return v && (std::strcmp(v, "0") == 0 || std::strcmp(v, "1") == 0) ? v[0] - '0' : 2;
}
int g_convGemm = ModeFromEnv("BYOL_NATIVE_CONV_GEMM");
int g_convMirror = ModeFromEnv("BYOL_NATIVE_CONV_MIRROR");
// Tuned choices by pass and geometry key. Bounded: a process that meets endless shapes starts over.
std::unordered_map<std::string, int> g_convChoice;

double TimeMs(const std::function<void()>& f) {
  auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

// A candidate way, the share of the time to beat it must come under to be taken (see Tuned), and a run of it.
struct Candidate {
  Way way;
  double margin;
  std::function<void(bool)> run;
};

// The way `key` takes, tuned once per key on its first call (every form run once, then three timed rounds; best
// times): the direct kernel unless a candidate comes under its margin of the time to beat (below). Forms run with
// `fresh` set: each converts (or mirrors) its filter and inputs anew instead of reading copies kept for their tensors,
// so that a form's own conversions count (a filter serves only a few calls a step: each view once, and the weights
// change every step). The margins keep near-ties (and with them the last bits of results) from flipping between
// processes; the choice holds for the process's life. Each run writes only the call's own output.
Way Tuned(const std::string& key, const std::function<void(bool)>& direct, const std::vector<Candidate>& others) {
  auto it = g_convChoice.find(key);
  if (it != g_convChoice.end()) return Way(it->second);
  if (others.empty()) return kDirect;
  direct(true);
  for (auto& c : others) c.run(true);
  double best = 1e300;
  std::vector<double> times(others.size(), 1e300);
  for (int round = 0; round < 3; round++) {
    best = std::min(best, TimeMs([&] { direct(true); }));
    for (size_t i = 0; i < others.size(); i++) times[i] = std::min(times[i], TimeMs([&] { others[i].run(true); }));
  }
  // The direct kernel holds until a candidate beats the holder by that candidate's margin, in a fixed order: near-ties
  // between two candidates keep the earlier one, as near-ties with the direct kernel keep that.
  Way way = kDirect;
  double wayTime = best;
  for (size_t i = 0; i < others.size(); i++)
    if (times[i] < others[i].margin * wayTime) way = others[i].way, wayTime = times[i];
  if (g_convChoice.size() >= 4096) g_convChoice.clear();
  g_convChoice[key] = way;
  return way;
}

// Which candidates a shape has. The matrix product: float32 forwards with a kernel larger than 1×1 (a 1×1 convolution
// is a matrix product already) and, when tuned, at most 64 output pixels per image (where oneDNN's direct kernels are
// weak), margin 15 %. The mirror: stride-1 undilated convolutions with a kernel larger than 1×1 and, when tuned, at
// least 2^27 multiply-adds·2 (~0.3 ms here: smaller calls time too noisily to choose the same way in every process,
// and have little to gain), margin 8 % (both kernels are oneDNN's; measured gains are 10-40 %).
bool GemmApplies(const ConvGeom& g, bool packed) {
  return !packed && g_convGemm != 0 && g.w[0] * g.w[1] > 1 && (g_convGemm == 1 || g.y[1] * g.y[2] <= 64);
}
bool MirrorApplies(const ConvGeom& g) {
  if (g_convMirror == 0 || !Mirrorable(g) || g.w[0] * g.w[1] == 1) return false;
  const double flops = 2.0 * double(Prod(g.y)) * double(g.w[0] * g.w[1] * g.w[2]);
  return g_convMirror == 1 || flops >= double(int64_t(1) << 27);
}

// conv2dForward(x, w, y, xShape, wShape, yShape, strides, dilations, padTL, padBR[, wToken, xPacked, yPacked]): wToken
// names the filter's tensor for ConvertedCache; xPacked: x is stored as bf16 (read as it is, never converted);
// yPacked: y is written as bf16 (the convolution's own output conversion).
Napi::Value Conv2dForward(const Napi::CallbackInfo& info) {
  ConvGeom g = ReadGeom(info, 3);
  const bool xPacked = info.Length() > 11 && info[11].ToBoolean().Value();
  const bool yPacked = info.Length() > 12 && info[12].ToBoolean().Value();
  Filter f{Data(info[1], Prod(g.w), "filter"), TokenArg(info, 10)};
  void* x = xPacked ? static_cast<void*>(PackedData(info[0], Prod(g.x), "x")) : static_cast<void*>(Data(info[0], Prod(g.x), "x"));
  void* y = yPacked ? static_cast<void*>(PackedData(info[2], Prod(g.y), "y")) : static_cast<void*>(Data(info[2], Prod(g.y), "y"));
  // fresh: no kept copies (tuning; see Tuned).
  auto direct = [&](bool fresh) { ForwardDirect(g, x, y, Filter{f.w, fresh ? 0 : f.token}, xPacked, yPacked); };
  auto gemm = [&](bool) { ForwardGemm(g, static_cast<float*>(x), f.w, static_cast<float*>(y)); };
  auto mirror = [&](bool fresh) { BackwardDataDirect(Mirror(g), x, y, Filter{f.w, fresh ? 0 : f.token, &g}, xPacked, 0, yPacked); };
  const bool gemmApplies = GemmApplies(g, xPacked || yPacked), mirrorApplies = MirrorApplies(g);
  Way way = kDirect;
  if (gemmApplies && g_convGemm == 1)
    way = kGemm;
  else if (mirrorApplies && g_convMirror == 1)
    way = kMirror;
  else if (gemmApplies || mirrorApplies) {  // (no candidate: no key to build, nothing to look up)
    std::vector<Candidate> others;
    if (gemmApplies) others.push_back({kGemm, 0.85, gemm});
    if (mirrorApplies) others.push_back({kMirror, 0.92, mirror});
    way = Tuned(g.Key("fwd") + (xPacked ? ",xp" : "") + (yPacked ? ",yp" : ""), direct, others);
  }
  if (way == kGemm)
    gemm(false);
  else if (way == kMirror)
    mirror(false);
  else
    direct(false);
  return info.Env().Undefined();
}

// Sets `mode` (0, 1 or 2) and forgets every tuned choice.
Napi::Value SetConvMode(const Napi::CallbackInfo& info, int& mode, const char* what) {
  int v = info[0].As<Napi::Number>().Int32Value();
  if (v < 0 || v > 2) throw Napi::RangeError::New(info.Env(), std::string(what) + " mode must be 0, 1 or 2");
  mode = v;
  g_convChoice.clear();
  return info.Env().Undefined();
}
// setConvGemm(mode) / setConvMirror(mode): whether convolutions may take the matrix product / the mirror's kernels
// (modes as above); each forgets tuned choices.
Napi::Value SetConvGemm(const Napi::CallbackInfo& info) { return SetConvMode(info, g_convGemm, "conv gemm"); }
Napi::Value SetConvMirror(const Napi::CallbackInfo& info) { return SetConvMode(info, g_convMirror, "conv mirror"); }

// The tuned passes that took `way` (their keys: pass, precision, geometry[, xp / yp for stored bf16 operands]), for
// tests and benches.
Napi::Value TunedShapes(const Napi::CallbackInfo& info, Way way) {
  Napi::Array out = Napi::Array::New(info.Env());
  uint32_t i = 0;
  for (auto& [key, w] : g_convChoice)
    if (w == way) out.Set(i++, key);
  return out;
}
Napi::Value ConvGemmShapes(const Napi::CallbackInfo& info) { return TunedShapes(info, kGemm); }
Napi::Value ConvMirrorShapes(const Napi::CallbackInfo& info) { return TunedShapes(info, kMirror); }

// conv2dBackpropInput(dy, w, dx, xShape, wShape, yShape, ...[, wToken, dyToken, dyPacked]): dyPacked: dy stored as bf16.
Napi::Value Conv2dBackpropInput(const Napi::CallbackInfo& info) {
  ConvGeom g = ReadGeom(info, 3);
  const bool dyPacked = info.Length() > 12 && info[12].ToBoolean().Value();
  void* dy = dyPacked ? static_cast<void*>(PackedData(info[0], Prod(g.y), "dy")) : static_cast<void*>(Data(info[0], Prod(g.y), "dy"));
  Filter f{Data(info[1], Prod(g.w), "filter"), TokenArg(info, 10)};
  float* dx = Data(info[2], Prod(g.x), "dx");
  const double dyToken = TokenArg(info, 11);
  auto direct = [&](bool fresh) { BackwardDataDirect(g, dy, dx, Filter{f.w, fresh ? 0 : f.token}, dyPacked, fresh ? 0 : dyToken); };
  auto mirror = [&](bool fresh) { ForwardDirect(Mirror(g), dy, dx, Filter{f.w, fresh ? 0 : f.token, &g}, dyPacked, false, fresh ? 0 : dyToken); };
  Way way = kDirect;
  if (MirrorApplies(g))
    way = g_convMirror == 1 ? kMirror : Tuned(g.Key("bwd_data") + (dyPacked ? ",yp" : ""), direct, {{kMirror, 0.92, mirror}});
  if (way == kMirror)
    mirror(false);
  else
    direct(false);
  return info.Env().Undefined();
}

// conv2dBackpropFilter(x, dy, dw, xShape, wShape, yShape, ...[, dyToken, xPacked, dyPacked])
Napi::Value Conv2dBackpropFilter(const Napi::CallbackInfo& info) {
  ConvGeom g = ReadGeom(info, 3);
  const bool xPacked = info.Length() > 11 && info[11].ToBoolean().Value();
  void* x = xPacked ? static_cast<void*>(PackedData(info[0], Prod(g.x), "x")) : static_cast<void*>(Data(info[0], Prod(g.x), "x"));
  const bool dyPacked = info.Length() > 12 && info[12].ToBoolean().Value();
  void* dy = dyPacked ? static_cast<void*>(PackedData(info[1], Prod(g.y), "dy")) : static_cast<void*>(Data(info[1], Prod(g.y), "dy"));
  float* dw = Data(info[2], Prod(g.w), "dw");
  std::string key = g.Key("bwd_weights");
  CachedConv* c = cache.Find(key);
  if (!c) {
    auto pd = ConvBackwardWeightsPd(g.Src(Low()), g.AnyWeights(), g.Dst(Low()), g.Strides(), g.Dil(), g.PadL(), g.PadR(), ForwardPd(g));
    c = cache.Insert(key, CachedConv{dnnl::convolution_backward_weights(pd), pd.diff_weights_desc(), pd.src_desc(), pd.diff_dst_desc()});
  }
  memory src0(g.Src(xPacked ? dt::bf16 : dt::f32), Engine(), x), ddst0(g.Dst(dyPacked ? dt::bf16 : dt::f32), Engine(), dy), user(g.UserWeights(), Engine(), dw);
  memory src = As(c->in1, src0, c->in1Buf), ddst = converted.Get(c->in2, ddst0, c->in2Buf, TokenArg(info, 10));
  const memory::desc& want = c->weights;
  if (want == user.get_desc()) {
    c->prim.execute(Stream(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, user}});
  } else {
    memory& tmp = c->wBuf;
    if (!tmp) tmp = memory(want, Engine());
    c->prim.execute(Stream(), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, tmp}});
    dnnl::reorder(tmp, user).execute(Stream(), tmp, user);
  }
  Stream().wait();
  cache.Account(c);
  return info.Env().Undefined();
}

// c[bc, m, n] = op(a) · op(b) through a cached oneDNN matmul: a is [ba, m, k] ([ba, k, m] when transposed), b is
// [bb, k, n] ([bb, n, k] when transposed); a batch of 1 broadcasts. In bf16 mode a and b are converted on the way in.
void MatMulInto(const float* a, const float* b, float* c, int64_t ba, int64_t bb, int64_t m, int64_t k, int64_t n, bool ta, bool tb) {
  int64_t bc = std::max(ba, bb);
  memory::desc amd({ba, m, k}, dt::f32, ta ? memory::dims{m * k, 1, m} : memory::dims{m * k, k, 1});
  memory::desc bmd({bb, k, n}, dt::f32, tb ? memory::dims{k * n, 1, k} : memory::dims{k * n, n, 1});
  memory::desc cmd({bc, m, n}, dt::f32, memory::dims{m * n, n, 1});
  std::ostringstream key;
  key << "mm," << g_bf16 << ',' << ba << ',' << bb << ',' << m << ',' << k << ',' << n << ',' << ta << ',' << tb;
  auto low = [](const memory::desc& md) { return memory::desc(DimsOf(md), Low(), StridesOf(md)); };
  CachedConv* e = cache.Find(key.str());
  if (!e) {
    auto pd = MatmulPd(low(amd), low(bmd), cmd);
    e = cache.Insert(key.str(), CachedConv{dnnl::matmul(pd), pd.weights_desc(), pd.src_desc(), {}});
  }
  memory am(amd, Engine(), const_cast<float*>(a)), bm(bmd, Engine(), const_cast<float*>(b)), cm(cmd, Engine(), c);
  memory al = As(e->in1, am, e->in1Buf), bl = As(e->weights, bm, e->wBuf);
  e->prim.execute(Stream(), {{DNNL_ARG_SRC, al}, {DNNL_ARG_WEIGHTS, bl}, {DNNL_ARG_DST, cm}});
  Stream().wait();
  cache.Account(e);
}

// matMul(a, b, c, batch, m, k, n, transposeA, transposeB): c[batch, m, n] = op(a) · op(b); a is [batch, m, k]
// ([batch, k, m] when transposed), b is [batch, k, n] ([batch, n, k] when transposed). Batch 1 broadcasts.
Napi::Value MatMul(const Napi::CallbackInfo& info) {
  int64_t ba = info[3].As<Napi::Number>().Int64Value();
  int64_t bb = info[4].As<Napi::Number>().Int64Value();
  int64_t m = info[5].As<Napi::Number>().Int64Value();
  int64_t k = info[6].As<Napi::Number>().Int64Value();
  int64_t n = info[7].As<Napi::Number>().Int64Value();
  bool ta = info[8].As<Napi::Boolean>().Value();
  bool tb = info[9].As<Napi::Boolean>().Value();
  float* a = Data(info[0], ba * m * k, "a");
  float* b = Data(info[1], bb * k * n, "b");
  float* c = Data(info[2], std::max(ba, bb) * m * n, "c");
  MatMulInto(a, b, c, ba, bb, m, k, n, ta, tb);
  return info.Env().Undefined();
}

// binary(op, a, b, out, mode, inner): elementwise a ∘ b into out, where one operand may repeat:
// mode 0: same size; 1: b[i % inner]; 2: a[i % inner]; 3: b[i / inner]; 4: a[i / inner].
// ops: 0 add, 1 sub, 2 mul, 3 div, 4 max, 5 min, 6 squared difference, 7 pow, 8 ReLU gradient.
// Calls fn(std::integral_constant<int, K>{}) for the runtime op K in [0, N), so that each op gets its own compiled
// loop; false for an unknown op.
template <int N, typename Fn>
bool DispatchOp(int op, Fn&& fn) {
  if constexpr (N == 0) {
    return false;
  } else {
    if (op == N - 1) {
      fn(std::integral_constant<int, N - 1>{});
      return true;
    }
    return DispatchOp<N - 1>(op, fn);
  }
}

template <int OP>
inline float Apply(float x, float y) {
  if constexpr (OP == 0) return x + y;
  if constexpr (OP == 1) return x - y;
  if constexpr (OP == 2) return x * y;
  if constexpr (OP == 3) return x / y;
  if constexpr (OP == 4) return x > y || x != x ? x : y;
  if constexpr (OP == 5) return x < y || x != x ? x : y;
  if constexpr (OP == 6) return (x - y) * (x - y);
  // ReLU's gradient dy·step(x) in one pass (x = dy, y = the ReLU's input; NaN inputs give NaN, as tfjs's Step).
  if constexpr (OP == 8) return y > 0.f ? x : (y != y ? y : x * 0.f);
  // A residual sum and its ReLU (as the relu unary: x < 0 → 0, NaN and −0 pass).
  if constexpr (OP == 9) return x + y < 0.f ? 0.f : x + y;
  return y == 2.f ? x * x : std::pow(x, y);
}

template <int OP>
void BinaryLoop(const float* a, const float* b, float* o, int64_t n, int mode, int64_t inner) {
  switch (mode) {
    case 0:
#pragma omp parallel for schedule(static) if (n > 32768)
      for (int64_t i = 0; i < n; i++) o[i] = Apply<OP>(a[i], b[i]);
      break;
    case 1:
    case 2: {
      const int64_t outer = n / inner;
#pragma omp parallel for schedule(static) if (n > 32768)
      for (int64_t r = 0; r < outer; r++) {
        const int64_t base = r * inner;
        if (mode == 1)
          for (int64_t j = 0; j < inner; j++) o[base + j] = Apply<OP>(a[base + j], b[j]);
        else
          for (int64_t j = 0; j < inner; j++) o[base + j] = Apply<OP>(a[j], b[base + j]);
      }
      break;
    }
    default: {
      const int64_t outer = n / inner;
#pragma omp parallel for schedule(static) if (n > 32768)
      for (int64_t r = 0; r < outer; r++) {
        const int64_t base = r * inner;
        if (mode == 3) {
          const float y = b[r];
          for (int64_t j = 0; j < inner; j++) o[base + j] = Apply<OP>(a[base + j], y);
        } else {
          const float x = a[r];
          for (int64_t j = 0; j < inner; j++) o[base + j] = Apply<OP>(x, b[base + j]);
        }
      }
    }
  }
}

Napi::Value Binary(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  auto out = info[3].As<Napi::Float32Array>();
  int64_t n = out.ElementLength();
  int mode = info[4].As<Napi::Number>().Int32Value();
  int64_t inner = info[5].As<Napi::Number>().Int64Value();
  int64_t na = mode == 2 ? inner : mode == 4 ? n / inner : n;
  int64_t nb = mode == 1 ? inner : mode == 3 ? n / inner : n;
  const float* a = Data(info[1], na, "a");
  const float* b = Data(info[2], nb, "b");
  float* o = out.Data();
  if (!DispatchOp<9>(op, [&](auto k) { BinaryLoop<decltype(k)::value>(a, b, o, n, mode, inner); })) {
    throw Napi::RangeError::New(info.Env(), "unknown binary op");
  }
  return info.Env().Undefined();
}

// reduce(op, x, out, outer, inner, leading): x viewed as [outer, inner]. leading: reduce over outer (out has
// inner values); else over inner (out has outer values). ops: 0 sum, 1 mean, 2 max, 3 min. Sums accumulate in double.
Napi::Value Reduce(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  int64_t outer = info[3].As<Napi::Number>().Int64Value();
  int64_t inner = info[4].As<Napi::Number>().Int64Value();
  bool leading = info[5].As<Napi::Boolean>().Value();
  const float* x = Data(info[1], outer * inner, "x");
  float* o = Data(info[2], leading ? inner : outer, "out");
  if (leading) {
    int threads = omp_get_max_threads();
    int64_t chunk = (inner + threads - 1) / threads;
#pragma omp parallel for schedule(static)
    for (int t = 0; t < threads; t++) {
      int64_t j0 = t * chunk, j1 = std::min(inner, j0 + chunk);
      if (j0 >= j1) continue;
      std::vector<double> acc(j1 - j0);
      for (int64_t j = j0; j < j1; j++) acc[j - j0] = op <= 1 ? 0.0 : x[j];
      for (int64_t r = op <= 1 ? 0 : 1; r < outer; r++) {
        const float* row = x + r * inner;
        if (op <= 1)
          for (int64_t j = j0; j < j1; j++) acc[j - j0] += row[j];
        else if (op == 2)
          for (int64_t j = j0; j < j1; j++) acc[j - j0] = std::max<double>(acc[j - j0], row[j]);
        else
          for (int64_t j = j0; j < j1; j++) acc[j - j0] = std::min<double>(acc[j - j0], row[j]);
      }
      for (int64_t j = j0; j < j1; j++) o[j] = float(op == 1 ? acc[j - j0] / double(outer) : acc[j - j0]);
    }
  } else {
#pragma omp parallel for schedule(static) if (outer * inner > 32768)
    for (int64_t r = 0; r < outer; r++) {
      const float* row = x + r * inner;
      double acc = op <= 1 ? 0.0 : row[0];
      if (op <= 1)
        for (int64_t j = 0; j < inner; j++) acc += row[j];
      else if (op == 2)
        for (int64_t j = 1; j < inner; j++) acc = std::max<double>(acc, row[j]);
      else
        for (int64_t j = 1; j < inner; j++) acc = std::min<double>(acc, row[j]);
      o[r] = float(op == 1 ? acc / double(inner) : acc);
    }
  }
  return info.Env().Undefined();
}

// unary(op, x, out, alpha): 0 relu, 1 step (x > 0 ? 1 : alpha; NaN stays NaN), 2 square, 3 sqrt, 4 rsqrt, 5 exp,
// 6 neg, 7 abs.
template <int OP>
inline float UnaryOp(float v, float alpha) {
  if constexpr (OP == 0) return v < 0.f ? 0.f : v;
  if constexpr (OP == 1) return v != v ? v : (v > 0.f ? 1.f : alpha);
  if constexpr (OP == 2) return v * v;
  if constexpr (OP == 3) return std::sqrt(v);
  if constexpr (OP == 4) return 1.f / std::sqrt(v);
  if constexpr (OP == 5) return std::exp(v);
  if constexpr (OP == 6) return -v;
  return std::fabs(v);
}

Napi::Value Unary(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  auto xa = info[1].As<Napi::Float32Array>();
  int64_t n = xa.ElementLength();
  const float* x = xa.Data();
  float* o = Data(info[2], n, "out");
  float alpha = info[3].As<Napi::Number>().FloatValue();
  bool known = DispatchOp<8>(op, [&](auto k) {
#pragma omp parallel for schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) o[i] = UnaryOp<decltype(k)::value>(x[i], alpha);
  });
  if (!known) throw Napi::RangeError::New(info.Env(), "unknown unary op");
  return info.Env().Undefined();
}

// reduceMiddle(op, x, out, outer, mid, inner): x viewed as [outer, mid, inner], reduced over mid into [outer, inner].
Napi::Value ReduceMiddle(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  int64_t outer = info[3].As<Napi::Number>().Int64Value();
  int64_t mid = info[4].As<Napi::Number>().Int64Value();
  int64_t inner = info[5].As<Napi::Number>().Int64Value();
  const float* x = Data(info[1], outer * mid * inner, "x");
  float* o = Data(info[2], outer * inner, "out");
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < outer; r++) {
    std::vector<double> acc(inner);
    const float* base = x + r * mid * inner;
    for (int64_t j = 0; j < inner; j++) acc[j] = op <= 1 ? 0.0 : base[j];
    for (int64_t m = op <= 1 ? 0 : 1; m < mid; m++) {
      const float* row = base + m * inner;
      if (op <= 1)
        for (int64_t j = 0; j < inner; j++) acc[j] += row[j];
      else if (op == 2)
        for (int64_t j = 0; j < inner; j++) acc[j] = std::max<double>(acc[j], row[j]);
      else
        for (int64_t j = 0; j < inner; j++) acc[j] = std::min<double>(acc[j], row[j]);
    }
    for (int64_t j = 0; j < inner; j++) o[r * inner + j] = float(op == 1 ? acc[j] / double(mid) : acc[j]);
  }
  return info.Env().Undefined();
}

// binaryMiddle(op, full, small, out, fullFirst, mid, inner): small is full with a middle run of dims set to 1:
// full viewed as [outer, mid, inner], small as [outer, inner].
template <int OP>
void MiddleLoop(const float* f, const float* sm, float* o, int64_t outer, int64_t mid, int64_t inner, bool fullFirst) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < outer; r++) {
    const float* srow = sm + r * inner;
    for (int64_t m = 0; m < mid; m++) {
      const int64_t base = (r * mid + m) * inner;
      if (fullFirst)
        for (int64_t j = 0; j < inner; j++) o[base + j] = Apply<OP>(f[base + j], srow[j]);
      else
        for (int64_t j = 0; j < inner; j++) o[base + j] = Apply<OP>(srow[j], f[base + j]);
    }
  }
}

Napi::Value BinaryMiddle(const Napi::CallbackInfo& info) {
  int op = info[0].As<Napi::Number>().Int32Value();
  bool fullFirst = info[4].As<Napi::Boolean>().Value();
  int64_t mid = info[5].As<Napi::Number>().Int64Value();
  int64_t inner = info[6].As<Napi::Number>().Int64Value();
  auto out = info[3].As<Napi::Float32Array>();
  int64_t n = out.ElementLength();
  int64_t outer = n / (mid * inner);
  const float* f = Data(info[1], n, "full");
  const float* sm = Data(info[2], outer * inner, "small");
  float* o = out.Data();
  if (!DispatchOp<8>(op, [&](auto k) { MiddleLoop<decltype(k)::value>(f, sm, o, outer, mid, inner, fullFirst); })) {
    throw Napi::RangeError::New(info.Env(), "unknown binary op");
  }
  return info.Env().Undefined();
}

struct PoolGeom {
  std::vector<int64_t> xs, ys, win, st, pad;
};

// The pooling geometry from info[at…at+4]: xShape, yShape, window, strides, padTopLeft.
PoolGeom ReadPool(const Napi::CallbackInfo& info, int at) {
  return {Ints(info[at], 4, "xShape"), Ints(info[at + 1], 4, "yShape"), Ints(info[at + 2], 2, "window"),
          Ints(info[at + 3], 2, "strides"), Ints(info[at + 4], 2, "padTopLeft")};
}

// Calls f(offset of the input pixel, in elements) for each window position of output pixel (n, oy, ox) that lies
// inside the input, row by row (the order in which tfjs picks the first maximum).
template <typename F>
inline void ForWindow(const PoolGeom& g, int64_t n, int64_t oy, int64_t ox, F f) {
  const int64_t H = g.xs[1], W = g.xs[2], C = g.xs[3];
  for (int64_t ky = 0; ky < g.win[0]; ky++) {
    const int64_t iy = oy * g.st[0] - g.pad[0] + ky;
    if (iy < 0 || iy >= H) continue;
    for (int64_t kx = 0; kx < g.win[1]; kx++) {
      const int64_t ix = ox * g.st[1] - g.pad[1] + kx;
      if (ix >= 0 && ix < W) f(((n * H + iy) * W + ix) * C);
    }
  }
}

// maxPool(x, y, xShape[4], yShape[4], window[2], strides[2], padTopLeft[2]): NHWC max over each window's in-bounds
// pixels, vectorized over channels; NaN never wins and an empty window gives −∞, as tfjs's cpu kernel.
// With xPacked, x and y are stored as bf16 (the max of bf16 values is one of them: nothing is rounded).
template <typename T>
void MaxPoolOf(const PoolGeom& g, const T* x, T* y) {
  const int64_t N = g.xs[0], C = g.xs[3], OH = g.ys[1], OW = g.ys[2];
#pragma omp parallel
  {
    std::vector<float> best(C);
#pragma omp for schedule(static) collapse(2)
    for (int64_t n = 0; n < N; n++)
      for (int64_t oy = 0; oy < OH; oy++)
        for (int64_t ox = 0; ox < OW; ox++) {
          float* yp = best.data();
          std::fill(yp, yp + C, -INFINITY);
          ForWindow(g, n, oy, ox, [&](int64_t at) {
            const T* xp = x + at;
            for (int64_t c = 0; c < C; c++) {
              const float v = Load(xp, c);
              yp[c] = v > yp[c] ? v : yp[c];
            }
          });
          T* out = y + ((n * OH + oy) * OW + ox) * C;
          for (int64_t c = 0; c < C; c++) Store(out, c, yp[c]);
        }
  }
}

Napi::Value MaxPool(const Napi::CallbackInfo& info) {
  PoolGeom g = ReadPool(info, 2);
  const bool packed = info.Length() > 7 && info[7].ToBoolean().Value();
  if (packed)
    MaxPoolOf<uint16_t>(g, PackedData(info[0], Prod(g.xs), "x"), PackedData(info[1], Prod(g.ys), "y"));
  else
    MaxPoolOf<float>(g, Data(info[0], Prod(g.xs), "x"), Data(info[1], Prod(g.ys), "y"));
  return info.Env().Undefined();
}

// maxPoolGrad(dy, x, dx, xShape[4], yShape[4], window[2], strides[2], padTopLeft[2]): routes each dy to the first
// maximum of its window in x (strictly greater, as tfjs's cpu kernel: a window of NaN or −∞ passes nothing), NHWC;
// channels vectorized, one image per thread at a time (the windows of one image may overlap, those of different
// images never do).
template <typename T>
void MaxPoolGradOf(const PoolGeom& g, const float* dy, const T* x, float* dx) {
  const int64_t N = g.xs[0], H = g.xs[1], W = g.xs[2], C = g.xs[3], OH = g.ys[1], OW = g.ys[2];
#pragma omp parallel
  {
    std::vector<float> best(C);
    std::vector<int64_t> at(C);
#pragma omp for schedule(static)
    for (int64_t n = 0; n < N; n++) {
      std::fill(dx + n * H * W * C, dx + (n + 1) * H * W * C, 0.f);
      for (int64_t oy = 0; oy < OH; oy++)
        for (int64_t ox = 0; ox < OW; ox++) {
          std::fill(best.begin(), best.end(), -INFINITY);
          std::fill(at.begin(), at.end(), int64_t(-1));
          ForWindow(g, n, oy, ox, [&](int64_t base) {
            const T* xp = x + base;
            for (int64_t c = 0; c < C; c++) {
              const float v = Load(xp, c);
              const bool take = v > best[c];
              best[c] = take ? v : best[c];
              at[c] = take ? base + c : at[c];
            }
          });
          const float* dyp = dy + ((n * OH + oy) * OW + ox) * C;
          for (int64_t c = 0; c < C; c++)
            if (at[c] >= 0) dx[at[c]] += dyp[c];
        }
    }
  }
}

Napi::Value MaxPoolGrad(const Napi::CallbackInfo& info) {
  PoolGeom g = ReadPool(info, 3);
  const float* dy = Data(info[0], Prod(g.ys), "dy");
  float* dx = Data(info[2], Prod(g.xs), "dx");
  const bool packed = info.Length() > 8 && info[8].ToBoolean().Value();  // x stored as bf16
  if (packed)
    MaxPoolGradOf<uint16_t>(g, dy, PackedData(info[1], Prod(g.xs), "x"), dx);
  else
    MaxPoolGradOf<float>(g, dy, Data(info[1], Prod(g.xs), "x"), dx);
  return info.Env().Undefined();
}

// y[r, j] = x[r, j] · a[j] + b[j] over rows of c values; with `Relu`, max(0, …) in the same pass (one compiled loop
// each, so that neither carries the other's test); x stored as X and y as Out (float, or bf16 in a uint16_t).
template <bool Relu, typename Out, typename X = float>
void AffineRowsOf(const X* x, const float* a, const float* b, Out* y, int64_t rows, int64_t c) {
  constexpr bool kPacked = std::is_same_v<Out, uint16_t>;
#pragma omp parallel if (rows * c > 32768)
  {
    std::vector<float> row(kPacked ? c : 0);  // a bf16 output is computed a row at a time, then converted
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      float* out = kPacked ? row.data() : reinterpret_cast<float*>(y) + r * c;
      for (int64_t j = 0; j < c; j++) {
        float v = Load(x, r * c + j) * a[j] + b[j];
        out[j] = Relu && v < 0.0f ? 0.0f : v;  // as tfjs's ReLU: NaN stays NaN
      }
      if constexpr (kPacked) ToBf16Row(out, reinterpret_cast<uint16_t*>(y) + r * c, c);
    }
  }
}
void AffineRows(const float* x, const float* a, const float* b, float* y, int64_t rows, int64_t c, bool relu = false) {
  if (relu) AffineRowsOf<true>(x, a, b, y, rows, c);
  else AffineRowsOf<false>(x, a, b, y, rows, c);
}

// channelAffine(x, scale, shift, out[, xPacked, n, outPacked]): out = x · scale[c] + shift[c] over the last axis
// (batch norm in inference form); x and out each float32 or stored as bf16 (then of n values).
Napi::Value ChannelAffine(const Napi::CallbackInfo& info) {
  auto sc = info[1].As<Napi::Float32Array>();
  int64_t c = sc.ElementLength();
  const bool xPacked = info.Length() > 4 && info[4].ToBoolean().Value();
  const bool outPacked = info.Length() > 6 && info[6].ToBoolean().Value();
  const int64_t n = xPacked || outPacked ? info[5].As<Napi::Number>().Int64Value() : int64_t(info[0].As<Napi::Float32Array>().ElementLength());
  const float* a = sc.Data();
  const float* b = Data(info[2], c, "shift");
  if (c == 0 || n % c != 0) throw Napi::RangeError::New(info.Env(), "channelAffine: size is not a multiple of channels");
  auto run = [&](const auto* x) {
    if (outPacked) AffineRowsOf<false>(x, a, b, PackedData(info[3], n, "out"), n / c, c);
    else AffineRowsOf<false>(x, a, b, Data(info[3], n, "out"), n / c, c);
  };
  WithStored(info[0], n, xPacked, "x", run);
  return info.Env().Undefined();
}

// Per-channel sums over the rows of x [rows, c], in double, each thread over its own block of rows: without `w`,
// Σx and Σx² (one pass for mean and variance); with `w` (the output gradient), Σw and Σw·(x − center[j]), where w
// counts only where mask > 0 when a mask (a ReLU's output) is given.
template <bool Masked, typename M = float, typename X = float>
void ChannelSums(const X* x, const float* w, const M* mask, const float* center, int64_t rows, int64_t c, double* out, double* out2) {
  std::fill(out, out + c, 0.0);
  std::fill(out2, out2 + c, 0.0);
#pragma omp parallel if (rows * c > 32768)
  {
    std::vector<double> s(c, 0.0), s2(c, 0.0);
#pragma omp for schedule(static) nowait
    for (int64_t r = 0; r < rows; r++) {
      const X* xr = x + r * c;
      if (!w) {
        for (int64_t j = 0; j < c; j++) {
          double v = Load(xr, j);
          s[j] += v;
          s2[j] += v * v;
        }
      } else {
        const float* wr = w + r * c;
        const M* mr = Masked ? mask + r * c : nullptr;
        for (int64_t j = 0; j < c; j++) {
          float wv = Masked ? wr[j] * float(Load(mr, j) > 0.0f) : wr[j];
          s[j] += wv;
          s2[j] += double(wv) * (double(Load(xr, j)) - center[j]);
        }
      }
    }
#pragma omp critical
    for (int64_t j = 0; j < c; j++) {
      out[j] += s[j];
      out2[j] += s2[j];
    }
  }
}

// bnTrain(x, gamma, beta, eps, y, mean, variance, relu[, yPacked, xPacked, n]): batch norm in training mode over all
// axes but the last (x stored as bf16 with xPacked, then of n values; y so with yPacked), in two
// passes: the statistics (mean and biased variance, as tf.moments; sums in double, so E[x²] − μ² loses nothing that
// float32 keeps), then y = (x − μ)·γ/√(σ² + ε) + β — rectified in the same pass when `relu` (batch norm + ReLU in
// the passes of batch norm alone).
Napi::Value BnTrain(const Napi::CallbackInfo& info) {
  auto ga = info[1].As<Napi::Float32Array>();
  int64_t c = ga.ElementLength();
  const bool xPacked = info.Length() > 9 && info[9].ToBoolean().Value();
  const int64_t n = xPacked ? info[10].As<Napi::Number>().Int64Value() : int64_t(info[0].As<Napi::Float32Array>().ElementLength());
  if (c == 0 || n % c != 0 || n == 0) throw Napi::RangeError::New(info.Env(), "bnTrain: size is not a positive multiple of channels");
  const float* g = ga.Data();
  const float* b = Data(info[2], c, "beta");
  const double eps = info[3].As<Napi::Number>().DoubleValue();
  const bool relu = info.Length() > 7 && info[7].ToBoolean().Value();
  const bool yPacked = info.Length() > 8 && info[8].ToBoolean().Value();
  float* mean = Data(info[5], c, "mean");
  float* var = Data(info[6], c, "variance");
  const int64_t rows = n / c;
  std::vector<double> s(c), sq(c);
  std::vector<float> a(c), sh(c);
  auto run = [&](const auto* x) {
    ChannelSums<false>(x, nullptr, static_cast<const float*>(nullptr), nullptr, rows, c, s.data(), sq.data());
    for (int64_t j = 0; j < c; j++) {
      double mu = s[j] / double(rows);
      mean[j] = float(mu);
      var[j] = float(std::max(0.0, sq[j] / double(rows) - mu * mu));
      double inv = 1.0 / std::sqrt(double(var[j]) + eps);
      a[j] = float(g[j] * inv);
      sh[j] = float(b[j] - double(mean[j]) * g[j] * inv);
    }
    if (yPacked) {
      uint16_t* y = PackedData(info[4], n, "y");
      if (relu) AffineRowsOf<true>(x, a.data(), sh.data(), y, rows, c);
      else AffineRowsOf<false>(x, a.data(), sh.data(), y, rows, c);
    } else {
      float* y = Data(info[4], n, "y");
      if (relu) AffineRowsOf<true>(x, a.data(), sh.data(), y, rows, c);
      else AffineRowsOf<false>(x, a.data(), sh.data(), y, rows, c);
    }
  };
  WithStored(info[0], n, xPacked, "x", run);
  return info.Env().Undefined();
}

// reluPacked(x, xPacked, y, n): y = max(0, x) stored as bf16 (NaN stays NaN); x float32 or bf16.
Napi::Value ReluPacked(const Napi::CallbackInfo& info) {
  const int64_t n = info[3].As<Napi::Number>().Int64Value();
  const bool xPacked = info[1].ToBoolean().Value();
  uint16_t* y = PackedData(info[2], n, "y");
  constexpr int64_t kChunk = 4096;
  auto run = [&](auto* x) {
#pragma omp parallel if (n > 32768)
    {
      float buf[kChunk];
#pragma omp for schedule(static)
      for (int64_t at = 0; at < n; at += kChunk) {
        const int64_t m = std::min(kChunk, n - at);
        for (int64_t i = 0; i < m; i++) {
          float v = Load(x, at + i);
          buf[i] = v < 0.f ? 0.f : v;
        }
        ToBf16Row(buf, y + at, m);
      }
    }
  };
  WithStored(info[0], n, xPacked, "x", run);
  return info.Env().Undefined();
}

// binaryPacked(op, a, aPacked, b, bPacked, out, outPacked): out = a ∘ b over same-size operands, either stored as
// bf16 or float32, out too; ops as binary(): 0 add, 8 ReLU's gradient dy·step(y) (a = dy, b = the ReLU's output), and
// 9 max(0, a + b) (a residual sum and its ReLU).
Napi::Value BinaryPacked(const Napi::CallbackInfo& info) {
  const int op = info[0].As<Napi::Number>().Int32Value();
  const bool ap = info[2].ToBoolean().Value(), bp = info[4].ToBoolean().Value(), op16 = info[6].ToBoolean().Value();
  const int64_t n = info[7].As<Napi::Number>().Int64Value();
  if (op != 0 && op != 8 && op != 9) throw Napi::RangeError::New(info.Env(), "binaryPacked: op must be 0 (add), 8 (ReLU gradient) or 9 (add + ReLU)");
  constexpr int64_t kChunk = 4096;
  auto run = [&](auto k, const auto* a, const auto* b) {
    constexpr int OP = decltype(k)::value;
    if (op16) {
      uint16_t* o = PackedData(info[5], n, "out");
#pragma omp parallel if (n > 32768)
      {
        float buf[kChunk];
#pragma omp for schedule(static)
        for (int64_t at = 0; at < n; at += kChunk) {
          const int64_t m = std::min(kChunk, n - at);
          for (int64_t i = 0; i < m; i++) buf[i] = Apply<OP>(Load(a, at + i), Load(b, at + i));
          ToBf16Row(buf, o + at, m);
        }
      }
    } else {
      float* o = Data(info[5], n, "out");
#pragma omp parallel for schedule(static) if (n > 32768)
      for (int64_t i = 0; i < n; i++) o[i] = Apply<OP>(Load(a, i), Load(b, i));
    }
  };
  auto withOperands = [&](auto k) {
    WithStored(info[1], n, ap, "a", [&](const auto* a) { WithStored(info[3], n, bp, "b", [&](const auto* b) { run(k, a, b); }); });
  };
  if (op == 0) withOperands(std::integral_constant<int, 0>{});
  else if (op == 8) withOperands(std::integral_constant<int, 8>{});
  else withOperands(std::integral_constant<int, 9>{});
  return info.Env().Undefined();
}

// unpackBf16(packed, out): out[i] = the i-th bf16 value of packed, for every value of out.
Napi::Value UnpackBf16(const Napi::CallbackInfo& info) {
  auto out = info[1].As<Napi::Float32Array>();
  const int64_t n = out.ElementLength();
  const uint16_t* x = PackedData(info[0], n, "packed");
  float* o = out.Data();
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; i++) o[i] = FromBf16(x[i]);
  return info.Env().Undefined();
}

// packBf16(x, out): out holds x's values as bf16 (tests).
Napi::Value PackBf16(const Napi::CallbackInfo& info) {
  auto xa = info[0].As<Napi::Float32Array>();
  const int64_t n = xa.ElementLength();
  const float* x = xa.Data();
  uint16_t* o = PackedData(info[1], n, "out");
  ToBf16Row(x, o, n);
  return info.Env().Undefined();
}

// The two passes of bnTrainGrad: the channel sums of dy and dy·(x − μ), then dx; with `Masked`, of dy·step(mask)
// (ReLU's gradient, as tfjs takes it: a NaN dy stays NaN), in a form that vectorizes.
template <bool Masked, typename M = float, typename X = float, typename DX = float>
void BnGrad(const X* x, const float* dy, const M* mask, const float* mean, const float* var, const float* g, double eps, DX* dx,
            float* dg, float* db, int64_t rows, int64_t c) {
  std::vector<double> sdy(c), sdyx(c);
  ChannelSums<Masked, M, X>(x, dy, mask, mean, rows, c, sdy.data(), sdyx.data());
  std::vector<float> k1(c), k2(c), k3(c);
  for (int64_t j = 0; j < c; j++) {
    double inv = 1.0 / std::sqrt(double(var[j]) + eps);
    db[j] = float(sdy[j]);
    dg[j] = float(sdyx[j] * inv);
    double gi = double(g[j]) * inv;
    double c2 = -gi * inv * inv * sdyx[j] / double(rows);
    k1[j] = float(gi);
    k2[j] = float(c2);
    k3[j] = float(-gi * sdy[j] / double(rows) - c2 * mean[j]);
  }
  constexpr bool kPacked = std::is_same_v<DX, uint16_t>;
#pragma omp parallel if (rows * c > 32768)
  {
    std::vector<float> row(kPacked ? c : 0);  // a bf16 dx is computed a row at a time, then converted
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      float* out = kPacked ? row.data() : reinterpret_cast<float*>(dx) + r * c;
      for (int64_t j = 0; j < c; j++) {
        float d = Masked ? dy[r * c + j] * float(Load(mask, r * c + j) > 0.0f) : dy[r * c + j];
        out[j] = k1[j] * d + k2[j] * Load(x, r * c + j) + k3[j];
      }
      if constexpr (kPacked) ToBf16Row(out, reinterpret_cast<uint16_t*>(dx) + r * c, c);
    }
  }
}

// bnTrainGrad(x, dy, mean, variance, gamma, eps, dx, dgamma, dbeta, y): the gradient of bnTrain's y through the batch
// statistics: dβ = Σdy, dγ = Σdy·x̂, dx = γ/σ·(dy − dβ/M − x̂·dγ/M) with x̂ = (x − μ)/σ, σ = √(σ² + ε), M = rows.
// With `y` (the rectified output of bnTrain with relu), dy is first zeroed where y ≤ 0 (ReLU's gradient), inside the
// same two passes; yPacked: y is stored as bf16; xPacked: x is, then of n values; dxPacked: dx is written so
// (bnTrainGrad(…, y, yPacked, xPacked, n, dxPacked)).
Napi::Value BnTrainGrad(const Napi::CallbackInfo& info) {
  auto ma = info[2].As<Napi::Float32Array>();
  int64_t c = ma.ElementLength();
  const bool xPacked = info.Length() > 11 && info[11].ToBoolean().Value();
  const int64_t n = xPacked ? info[12].As<Napi::Number>().Int64Value() : int64_t(info[0].As<Napi::Float32Array>().ElementLength());
  if (c == 0 || n % c != 0 || n == 0) throw Napi::RangeError::New(info.Env(), "bnTrainGrad: size is not a positive multiple of channels");
  const float* dy = Data(info[1], n, "dy");
  const float* mean = ma.Data();
  const float* var = Data(info[3], c, "variance");
  const float* g = Data(info[4], c, "gamma");
  const double eps = info[5].As<Napi::Number>().DoubleValue();
  const bool dxPacked = info.Length() > 13 && info[13].ToBoolean().Value();
  void* dx = dxPacked ? static_cast<void*>(PackedData(info[6], n, "dx")) : static_cast<void*>(Data(info[6], n, "dx"));
  float* dg = Data(info[7], c, "dgamma");
  float* db = Data(info[8], c, "dbeta");
  const int64_t rows = n / c;
  const bool hasMask = info.Length() > 9 && !info[9].IsUndefined() && !info[9].IsNull();
  const bool maskPacked = info.Length() > 10 && info[10].ToBoolean().Value();
  auto withDx = [&](const auto* x, auto* out) {
    if (hasMask && maskPacked)
      BnGrad<true>(x, dy, static_cast<const uint16_t*>(PackedData(info[9], n, "y")), mean, var, g, eps, out, dg, db, rows, c);
    else if (hasMask)
      BnGrad<true>(x, dy, static_cast<const float*>(Data(info[9], n, "y")), mean, var, g, eps, out, dg, db, rows, c);
    else
      BnGrad<false>(x, dy, static_cast<const float*>(nullptr), mean, var, g, eps, out, dg, db, rows, c);
  };
  auto run = [&](const auto* x) {
    if (dxPacked) withDx(x, static_cast<uint16_t*>(dx));
    else withDx(x, static_cast<float*>(dx));
  };
  WithStored(info[0], n, xPacked, "x", run);
  return info.Env().Undefined();
}

// larsUpdate(p, g, mu, newP, newMu, lr, weightDecay, momentum, eta, adapt): one LARS step for one parameter, as the
// official optax chain (decay, trust ratio, momentum, −lr) — decay and trust ratio only when `adapt`.
Napi::Value LarsUpdate(const Napi::CallbackInfo& info) {
  auto pa = info[0].As<Napi::Float32Array>();
  int64_t n = pa.ElementLength();
  const float* p = pa.Data();
  const float* g = Data(info[1], n, "grad");
  const float* mu = Data(info[2], n, "mu");
  float* np = Data(info[3], n, "newP");
  float* nmu = Data(info[4], n, "newMu");
  double lr = info[5].As<Napi::Number>().DoubleValue();
  double wd = info[6].As<Napi::Number>().DoubleValue();
  double m = info[7].As<Napi::Number>().DoubleValue();
  double eta = info[8].As<Napi::Number>().DoubleValue();
  bool adapt = info[9].As<Napi::Boolean>().Value();
  double scale = 1.0;
  if (adapt) {
    double pn = 0, un = 0;
#pragma omp parallel for reduction(+ : pn, un) schedule(static) if (n > 32768)
    for (int64_t i = 0; i < n; i++) {
      double u = double(g[i]) + wd * double(p[i]);
      pn += double(p[i]) * double(p[i]);
      un += u * u;
    }
    pn = std::sqrt(pn);
    un = std::sqrt(un);
    if (pn > 0 && un > 0) scale = eta * pn / un;
  }
  const float w = adapt ? float(wd) : 0.f;
  const float sc = float(scale), mf = float(m), lf = float(lr);
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; i++) {
    float u = (g[i] + w * p[i]) * sc;
    float v = mf * mu[i] + u;
    nmu[i] = v;
    np[i] = p[i] - lf * v;
  }
  return info.Env().Undefined();
}

// emaUpdate(target, online, out, tau): out = tau · target + (1 − tau) · online.
Napi::Value EmaUpdate(const Napi::CallbackInfo& info) {
  auto ta = info[0].As<Napi::Float32Array>();
  int64_t n = ta.ElementLength();
  const float* t = ta.Data();
  const float* o = Data(info[1], n, "online");
  float* out = Data(info[2], n, "out");
  const float tau = info[3].As<Napi::Number>().FloatValue();
  const float rest = 1.f - tau;
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; i++) out[i] = tau * t[i] + rest * o[i];
  return info.Env().Undefined();
}

// emaUpdateAll(targets[], onlines[], outs[], tau): the EMA of every target weight in one call, all weights split
// across the threads as one range (small weights would not pay for a parallel region each).
Napi::Value EmaUpdateAll(const Napi::CallbackInfo& info) {
  auto ts = info[0].As<Napi::Array>(), os = info[1].As<Napi::Array>(), outs = info[2].As<Napi::Array>();
  const uint32_t m = ts.Length();
  if (os.Length() != m || outs.Length() != m) throw Napi::RangeError::New(info.Env(), "emaUpdateAll: targets, onlines and outs differ in number");
  std::vector<const float*> t(m), o(m);
  std::vector<float*> out(m);
  std::vector<int64_t> start(m + 1, 0);
  for (uint32_t k = 0; k < m; k++) {
    auto tk = ts.Get(k).As<Napi::Float32Array>();
    const int64_t n = tk.ElementLength();
    t[k] = tk.Data();
    o[k] = Data(os.Get(k), n, "online");
    out[k] = Data(outs.Get(k), n, "out");
    start[k + 1] = start[k] + n;
  }
  const float tau = info[3].As<Napi::Number>().FloatValue();
  const float rest = 1.f - tau;
  const int64_t total = start[m];
#pragma omp parallel if (total > 32768)
  {
    const int threads = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t lo = total * me / threads, hi = total * (me + 1) / threads;
    // The weights overlapping [lo, hi), each over its overlap.
    uint32_t k = uint32_t(std::upper_bound(start.begin(), start.end(), lo) - start.begin()) - 1;
    for (; k < m && start[k] < hi; k++) {
      const int64_t a = std::max(lo, start[k]) - start[k], b = std::min(hi, start[k + 1]) - start[k];
      for (int64_t i = a; i < b; i++) out[k][i] = tau * t[k][i] + rest * o[k][i];
    }
  }
  return info.Env().Undefined();
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  omp_set_num_threads(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

// setBf16(on): switches bf16 mode; returns whether this CPU can (a small bf16 convolution must build).
// The implementation oneDNN picks for a 3×3 convolution with `t` inputs (e.g. "brg:avx512_core_bf16"), naming the
// instruction set it dispatches; "" when it has none.
std::string ConvImpl(dt t) {
  try {
    memory::desc s({1, 16, 4, 4}, t, tag::nhwc), w({16, 16, 3, 3}, t, tag::any), d({1, 16, 4, 4}, dt::f32, tag::nhwc);
    return ConvForwardPd(s, w, d, {1, 1}, {0, 0}, {1, 1}, {1, 1}).impl_info_str();
  } catch (const dnnl::error&) {
    return "";
  }
}

Napi::Value SetBf16(const Napi::CallbackInfo& info) {
  bool on = info[0].As<Napi::Boolean>().Value();
  if (on) {
    std::string impl = ConvImpl(dt::bf16);
    // A reference (non-jit) implementation would be far slower than float32: treat it as unsupported.
    if (impl.empty() || impl.find("ref") != std::string::npos) return Napi::Boolean::New(info.Env(), false);
  }
  g_bf16 = on;
  return Napi::Boolean::New(info.Env(), true);
}

// implInfo(): { fp32, bf16 } — the convolution implementations oneDNN dispatches here (see ConvImpl).
Napi::Value ImplInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("fp32", ConvImpl(dt::f32));
  o.Set("bf16", ConvImpl(dt::bf16));
  return o;
}

Napi::Value GetThreads(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), omp_get_max_threads()); }

Napi::Value CacheSize(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(cache.Size())); }

// cacheStats(): { entries, bytes, limit, byteLimit } of the primitive cache.
Napi::Value CacheStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("entries", double(cache.Size()));
  o.Set("bytes", double(cache.Bytes()));
  o.Set("limit", double(cache.Limit()));
  o.Set("byteLimit", double(cache.ByteLimit()));
  return o;
}

// setCacheLimits(entries, bytes): bounds the primitive cache (evicting least recently used primitives at once).
Napi::Value SetCacheLimits(const Napi::CallbackInfo& info) {
  double entries = info[0].As<Napi::Number>().DoubleValue(), bytes = info[1].As<Napi::Number>().DoubleValue();
  if (!(entries >= 1) || !(bytes >= 0)) throw Napi::RangeError::New(info.Env(), "cache limits must be entries >= 1 and bytes >= 0");
  cache.SetLimits(size_t(entries), size_t(bytes));
  return info.Env().Undefined();
}

// forgetConverted(token): the tensor named by `token` is gone; drops its converted copies.
Napi::Value ForgetConverted(const Napi::CallbackInfo& info) {
  converted.Forget(info[0].As<Napi::Number>().DoubleValue());
  return info.Env().Undefined();
}

// convertedStats(): { tokens, bytes } of the converted copies kept; setConvertedLimit(bytes) bounds them (0: none kept).
Napi::Value ConvertedStats(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("tokens", double(converted.Tokens()));
  o.Set("bytes", double(converted.Bytes()));
  return o;
}
Napi::Value SetConvertedLimit(const Napi::CallbackInfo& info) {
  double bytes = info[0].As<Napi::Number>().DoubleValue();
  if (!(bytes >= 0)) throw Napi::RangeError::New(info.Env(), "converted-copy limit must be bytes >= 0");
  converted.SetLimit(size_t(bytes));
  return info.Env().Undefined();
}

// Wraps a kernel so that oneDNN's errors reach JavaScript as exceptions with its message.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guard(const Napi::CallbackInfo& info) {
  try {
    return F(info);
  } catch (const dnnl::error& e) {
    throw Napi::Error::New(info.Env(), std::string("oneDNN: ") + e.what());
  }
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
#if defined(__GLIBC__)
  // Training allocates and frees the same large tensors every step. glibc serves blocks above its mmap threshold
  // (128 KiB, adapting up to 32 MiB) with fresh mmaps whose pages fault in on first touch, and returns them on free;
  // keeping blocks up to 32 MiB in the heap, and not trimming it below 256 MiB, lets them be reused warm (about
  // 10-30 % of a ResNet step here). BYOL_NATIVE_MALLOC=0 leaves glibc's defaults.
  const char* tune = std::getenv("BYOL_NATIVE_MALLOC");
  if (!tune || std::strcmp(tune, "0") != 0) {
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
  }
#endif
  exports.Set("conv2dForward", Napi::Function::New(env, Guard<Conv2dForward>));
  exports.Set("conv2dBackpropInput", Napi::Function::New(env, Guard<Conv2dBackpropInput>));
  exports.Set("conv2dBackpropFilter", Napi::Function::New(env, Guard<Conv2dBackpropFilter>));
  exports.Set("matMul", Napi::Function::New(env, Guard<MatMul>));
  exports.Set("binary", Napi::Function::New(env, Guard<Binary>));
  exports.Set("reduce", Napi::Function::New(env, Guard<Reduce>));
  exports.Set("unary", Napi::Function::New(env, Guard<Unary>));
  exports.Set("reduceMiddle", Napi::Function::New(env, Guard<ReduceMiddle>));
  exports.Set("binaryMiddle", Napi::Function::New(env, Guard<BinaryMiddle>));
  exports.Set("emaUpdateAll", Napi::Function::New(env, Guard<EmaUpdateAll>));
  exports.Set("maxPool", Napi::Function::New(env, Guard<MaxPool>));
  exports.Set("maxPoolGrad", Napi::Function::New(env, Guard<MaxPoolGrad>));
  exports.Set("channelAffine", Napi::Function::New(env, Guard<ChannelAffine>));
  exports.Set("bnTrain", Napi::Function::New(env, Guard<BnTrain>));
  exports.Set("bnTrainGrad", Napi::Function::New(env, Guard<BnTrainGrad>));
  exports.Set("reluPacked", Napi::Function::New(env, Guard<ReluPacked>));
  exports.Set("binaryPacked", Napi::Function::New(env, Guard<BinaryPacked>));
  exports.Set("unpackBf16", Napi::Function::New(env, Guard<UnpackBf16>));
  exports.Set("packBf16", Napi::Function::New(env, Guard<PackBf16>));
  exports.Set("larsUpdate", Napi::Function::New(env, Guard<LarsUpdate>));
  exports.Set("emaUpdate", Napi::Function::New(env, Guard<EmaUpdate>));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("forgetConverted", Napi::Function::New(env, ForgetConverted));
  exports.Set("convertedStats", Napi::Function::New(env, ConvertedStats));
  exports.Set("setConvertedLimit", Napi::Function::New(env, SetConvertedLimit));
  exports.Set("setConvGemm", Napi::Function::New(env, Guard<SetConvGemm>));
  exports.Set("convGemmShapes", Napi::Function::New(env, ConvGemmShapes));
  exports.Set("setConvMirror", Napi::Function::New(env, Guard<SetConvMirror>));
  exports.Set("convMirrorShapes", Napi::Function::New(env, ConvMirrorShapes));
  exports.Set("setBf16", Napi::Function::New(env, SetBf16));
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("cacheSize", Napi::Function::New(env, CacheSize));
  exports.Set("cacheStats", Napi::Function::New(env, CacheStats));
  exports.Set("implInfo", Napi::Function::New(env, Guard<ImplInfo>));
  exports.Set("setCacheLimits", Napi::Function::New(env, SetCacheLimits));
  exports.Set("dnnlVersion", Napi::String::New(env, std::to_string(DNNL_VERSION_MAJOR) + "." + std::to_string(DNNL_VERSION_MINOR) + "." +
                                                        std::to_string(DNNL_VERSION_PATCH)));
  return exports;
}

}  // namespace

NODE_API_MODULE(byol_native, Init)
