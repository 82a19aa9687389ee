package httpapi

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, so benchmarks
// measure the handler rather than a recorder.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

func benchmarkInfer(b *testing.B, body []byte, header map[string]string) {
	benchmarkInferOptions(b, body, header, quiet)
}

func benchmarkInferOptions(b *testing.B, body []byte, header map[string]string, opts Options) {
	h := NewHandler(newFakeService(), opts)
	req := httptest.NewRequest("POST", "/v2/models/simple/infer", nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	w := &discardWriter{h: http.Header{}}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req.Body = readCloser{bytes.NewReader(body)}
		req.ContentLength = int64(len(body))
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// BenchmarkInferBinary is perf_analyzer's default request: binary input,
// binary output.
func BenchmarkInferBinary(b *testing.B) {
	for _, n := range []int{16, 150528} {
		b.Run(strconv.Itoa(n*4)+"B", func(b *testing.B) {
			header := fmt.Sprintf(`{"inputs":[{"name":"INPUT0","shape":[1,%d],"datatype":"FP32","parameters":{"binary_data_size":%d}}],`+
				`"outputs":[{"name":"INPUT0","parameters":{"binary_data":true}}]}`, n, n*4)
			body := append([]byte(header), make([]byte, n*4)...)
			benchmarkInfer(b, body, map[string]string{headerLengthHeader: strconv.Itoa(len(header))})
		})
	}
}

// BenchmarkInferJSON sends and receives 1000 FP32 values as JSON.
func BenchmarkInferJSON(b *testing.B) {
	vals := make([]string, 1000)
	for i := range vals {
		vals[i] = strconv.FormatFloat(float64(i)*0.37-100, 'g', -1, 32)
	}
	body := []byte(`{"inputs":[{"name":"INPUT0","shape":[1,1000],"datatype":"FP32","data":[` + strings.Join(vals, ",") + `]}]}`)
	benchmarkInfer(b, body, nil)
}
