package kernels

import (
	"fmt"
	"strings"

	"github.com/helixflow/helixflow/workers/backend/cuda/graph"
)

// WarpsPerBlock is how many rows the row kernels (softmax, layer
// normalization, row mean) handle per block: one warp per row.
const WarpsPerBlock = 8

// rowPrologue starts a warp-per-row kernel: row is this warp's row, and
// whole warps past the last row leave together (the shuffles need every
// lane of a warp).
const rowPrologue = `  long long row = (long long)blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  int lane = threadIdx.x & 31;
  if (row >= rows) return;
`

// subst writes a float kernel's body for type d: T_S is the storage type,
// LOAD(x) converts an element to float and STORE(v) a float to an element.
func subst(body string, d graph.DType) string {
	c := ct(d)
	call := func(format string) string {
		prefix := format[:strings.Index(format, "%s")]
		if strings.HasSuffix(prefix, "(") {
			return prefix
		}
		return prefix + "("
	}
	return strings.NewReplacer("T_S", c.storage, "LOAD(", call(c.load), "STORE(", call(c.store)).Replace(body)
}

func floatOnly(what string, d graph.DType) error {
	if !isFloatKernelType(d) {
		return fmt.Errorf("%w: %s on %s", graph.ErrUnsupported, what, d)
	}
	return nil
}

// SoftmaxRows normalizes each row of [rows, n] (the softmax axis last and
// contiguous). Params: out, in, rows, n.
func SoftmaxRows(d graph.DType) (Kernel, error) {
	if err := floatOnly("Softmax", d); err != nil {
		return Kernel{}, err
	}
	body := subst(`{
`+rowPrologue+`  const T_S* x = in + row * n;
  T_S* y = out + row * n;
  float m = hx_neg_inf();
  for (long long j = lane; j < n; j += 32) {
    float v = LOAD(x[j]);
    m = v > m ? v : m;
  }
  m = hx_warp_max(m);
  float s = 0.0f;
  for (long long j = lane; j < n; j += 32) s += expf(LOAD(x[j]) - m);
  s = hx_warp_sum(s);
  float inv = 1.0f / s;
  for (long long j = lane; j < n; j += 32) y[j] = STORE(expf(LOAD(x[j]) - m) * inv);
}`, d)
	return named("softmax_rows", Kernel{Params: []Param{
		{Ptr, subst("T_S* __restrict__ out", d)}, {Ptr, subst("const T_S* __restrict__ in", d)},
		{I64, "long long rows"}, {I64, "long long n"},
	}, Body: body, Sync: true}), nil
}

// SoftmaxStrided normalizes [outer, n, inner] over the middle axis, one
// thread per (outer, inner) pair. Params: out, in, outer, n, inner.
func SoftmaxStrided(d graph.DType) (Kernel, error) {
	if err := floatOnly("Softmax", d); err != nil {
		return Kernel{}, err
	}
	body := subst(`{
  long long total = outer * inner;
  long long step = (long long)gridDim.x * blockDim.x;
  for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += step) {
    long long o = t / inner, k = t - o * inner;
    const T_S* x = in + o * n * inner + k;
    T_S* y = out + o * n * inner + k;
    float m = hx_neg_inf();
    for (long long j = 0; j < n; ++j) {
      float v = LOAD(x[j * inner]);
      m = v > m ? v : m;
    }
    float s = 0.0f;
    for (long long j = 0; j < n; ++j) s += expf(LOAD(x[j * inner]) - m);
    float inv = 1.0f / s;
    for (long long j = 0; j < n; ++j) y[j * inner] = STORE(expf(LOAD(x[j * inner]) - m) * inv);
  }
}`, d)
	return named("softmax_strided", Kernel{Params: []Param{
		{Ptr, subst("T_S* __restrict__ out", d)}, {Ptr, subst("const T_S* __restrict__ in", d)},
		{I64, "long long outer"}, {I64, "long long n"}, {I64, "long long inner"},
	}, Body: body}), nil
}

// LayerNorm normalizes each row of [rows, n] and applies scale and
// (when hasBias) bias of length n. Params: out, in, scale, bias, rows, n,
// hasBias, eps.
func LayerNorm(d graph.DType) (Kernel, error) {
	if err := floatOnly("LayerNormalization", d); err != nil {
		return Kernel{}, err
	}
	body := subst(`{
`+rowPrologue+`  const T_S* x = in + row * n;
  T_S* y = out + row * n;
  float s = 0.0f;
  for (long long j = lane; j < n; j += 32) s += LOAD(x[j]);
  float mean = hx_warp_sum(s) / (float)n;
  float q = 0.0f;
  for (long long j = lane; j < n; j += 32) {
    float c = LOAD(x[j]) - mean;
    q += c * c;
  }
  float rstd = 1.0f / sqrtf(hx_warp_sum(q) / (float)n + eps);
  for (long long j = lane; j < n; j += 32) {
    float v = (LOAD(x[j]) - mean) * rstd * LOAD(scale[j]);
    if (hasBias) v += LOAD(bias[j]);
    y[j] = STORE(v);
  }
}`, d)
	return named("layernorm", Kernel{Params: []Param{
		{Ptr, subst("T_S* __restrict__ out", d)}, {Ptr, subst("const T_S* __restrict__ in", d)},
		{Ptr, subst("const T_S* __restrict__ scale", d)}, {Ptr, subst("const T_S* __restrict__ bias", d)},
		{I64, "long long rows"}, {I64, "long long n"}, {I64, "long long hasBias"}, {F32, "float eps"},
	}, Body: body, Sync: true}), nil
}

// RowMean writes the mean of each row of [rows, n] (GlobalAveragePool).
// Params: out, in, rows, n.
func RowMean(d graph.DType) (Kernel, error) {
	if err := floatOnly("GlobalAveragePool", d); err != nil {
		return Kernel{}, err
	}
	body := subst(`{
`+rowPrologue+`  const T_S* x = in + row * n;
  float s = 0.0f;
  for (long long j = lane; j < n; j += 32) s += LOAD(x[j]);
  s = hx_warp_sum(s);
  if (lane == 0) out[row] = STORE(s / (float)n);
}`, d)
	return named("rowmean", Kernel{Params: []Param{
		{Ptr, subst("T_S* __restrict__ out", d)}, {Ptr, subst("const T_S* __restrict__ in", d)},
		{I64, "long long rows"}, {I64, "long long n"},
	}, Body: body, Sync: true}), nil
}

// Copy moves the elements of an iteration shape from one strided layout
// to another: Transpose, Slice and each input of Concat. Params: out, in,
// n, rank, shape, inStrides, outStrides, inBase, outBase (in elements).
//
// With index32 every offset is computed in 32 bits (both tensors have
// fewer than 2^31 elements).
func Copy(elemSize int, index32 bool) Kernel {
	t := bitsType(elemSize)
	body := strings.ReplaceAll(`{
  IDX step = (IDX)gridDim.x * blockDim.x, count = (IDX)n;
  for (IDX i = (IDX)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += step) {
    IDX r = i, a = (IDX)inBase, b = (IDX)outBase;
    for (int d = (int)rank - 1; d >= 0; --d) {
      IDX s = (IDX)shape.d[d];
      IDX q = r / s;
      IDX k = r - q * s;
      a += k * (IDX)inSt.d[d];
      b += k * (IDX)outSt.d[d];
      r = q;
    }
    out[b] = in[a];
  }
}`, "IDX", indexType(index32))
	return named(fmt.Sprintf("copy%d", elemSize), Kernel{Params: []Param{
		{Ptr, t + "* __restrict__ out"}, {Ptr, "const " + t + "* __restrict__ in"},
		{I64, "long long n"}, {I64, "long long rank"}, {DimsParam, "hx_dims shape"},
		{DimsParam, "hx_dims inSt"}, {DimsParam, "hx_dims outSt"},
		{I64, "long long inBase"}, {I64, "long long outBase"},
	}, Body: body})
}

// Gather picks slices of data along an axis: data is [outer, dim, inner],
// idx holds count indices (negative ones count from the end; out-of-range
// ones are clamped, as a kernel cannot fail), out is [outer, count,
// inner]. Params: out, data, idx, outer, dim, inner, count.
func Gather(elemSize int, idx graph.DType) (Kernel, error) {
	if idx != graph.Int32 && idx != graph.Int64 {
		return Kernel{}, fmt.Errorf("%w: Gather indices of type %s", graph.ErrUnsupported, idx)
	}
	t := bitsType(elemSize)
	body := `{
  long long total = outer * count * inner;
  long long step = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    long long b = i % inner;
    long long j = (i / inner) % count;
    long long a = i / (inner * count);
    long long k = (long long)idx[j];
    if (k < 0) k += dim;
    k = k < 0 ? 0 : (k >= dim ? dim - 1 : k);
    out[i] = data[(a * dim + k) * inner + b];
  }
}`
	return named(fmt.Sprintf("gather%d", elemSize), Kernel{Params: []Param{
		{Ptr, t + "* __restrict__ out"}, {Ptr, "const " + t + "* __restrict__ data"},
		{Ptr, "const " + ct(idx).storage + "* __restrict__ idx"},
		{I64, "long long outer"}, {I64, "long long dim"}, {I64, "long long inner"}, {I64, "long long count"},
	}, Body: body}), nil
}

// Im2Col unfolds images [images, C, H, W] into columns [images, C*KH*KW,
// OH*OW] for a convolution as a matrix product; padding reads as zero.
// Params: col, x, images, C, H, W, KH, KW, OH, OW, strideH, strideW,
// padH, padW, dilH, dilW.
func Im2Col(d graph.DType) (Kernel, error) {
	if err := floatOnly("Conv", d); err != nil {
		return Kernel{}, err
	}
	body := subst(`{
  long long P = OH * OW;
  long long rowsPerImage = C * KH * KW;
  long long total = images * rowsPerImage * P;
  long long step = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    long long p = i % P;
    long long r = (i / P) % rowsPerImage;
    long long img = i / (P * rowsPerImage);
    long long kw = r % KW, kh = (r / KW) % KH, c = r / (KW * KH);
    long long oh = p / OW, ow = p % OW;
    long long h = oh * sh - ph + kh * dh;
    long long w = ow * sw - pw + kw * dw;
    T_S v;
    if (h >= 0 && h < H && w >= 0 && w < W) {
      v = x[((img * C + c) * H + h) * W + w];
    } else {
      v = STORE(0.0f);
    }
    col[i] = v;
  }
}`, d)
	params := []Param{{Ptr, subst("T_S* __restrict__ col", d)}, {Ptr, subst("const T_S* __restrict__ x", d)}}
	for _, n := range []string{"images", "C", "H", "W", "KH", "KW", "OH", "OW", "sh", "sw", "ph", "pw", "dh", "dw"} {
		params = append(params, Param{I64, "long long " + n})
	}
	return named("im2col", Kernel{Params: params, Body: body}), nil
}

// Pool2D is MaxPool or AveragePool over [planes, H, W] → [planes, OH, OW].
// AveragePool divides by the in-bounds count, or with countPad by the
// window clipped to the padded input. Params: out, x, planes, H, W, OH, OW,
// KH, KW, sh, sw, ph, pw, dh, dw, padEndH, padEndW, countPad.
func Pool2D(d graph.DType, max bool) (Kernel, error) {
	if err := floatOnly("pooling", d); err != nil {
		return Kernel{}, err
	}
	init, accum, final := "float acc = 0.0f; long long cnt = 0;", "acc += v; ++cnt;",
		`long long hs = oh * sh - ph, ws = ow * sw - pw;
    long long he = hs + KH > H + padEndH ? H + padEndH : hs + KH;
    long long we = ws + KW > W + padEndW ? W + padEndW : ws + KW;
    float div = countPad ? (float)((he - hs) * (we - ws)) : (float)cnt;
    out[i] = STORE(cnt > 0 ? acc / div : 0.0f);`
	name := "avgpool"
	if max {
		init, accum, final = "float acc = hx_neg_inf();", "acc = v > acc ? v : acc;", "out[i] = STORE(acc);"
		name = "maxpool"
	}
	body := subst(`{
  long long total = planes * OH * OW;
  long long step = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += step) {
    long long ow = i % OW, oh = (i / OW) % OH, pl = i / (OW * OH);
    const T_S* p = x + pl * H * W;
    `+init+`
    for (long long kh = 0; kh < KH; ++kh) {
      long long h = oh * sh - ph + kh * dh;
      if (h < 0 || h >= H) continue;
      for (long long kw = 0; kw < KW; ++kw) {
        long long w = ow * sw - pw + kw * dw;
        if (w < 0 || w >= W) continue;
        float v = LOAD(p[h * W + w]);
        `+accum+`
      }
    }
    `+final+`
  }
}`, d)
	params := []Param{{Ptr, subst("T_S* __restrict__ out", d)}, {Ptr, subst("const T_S* __restrict__ x", d)}}
	for _, n := range []string{"planes", "H", "W", "OH", "OW", "KH", "KW", "sh", "sw", "ph", "pw", "dh", "dw", "padEndH", "padEndW", "countPad"} {
		params = append(params, Param{I64, "long long " + n})
	}
	return named(name, Kernel{Params: params, Body: body}), nil
}
