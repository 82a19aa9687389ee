package rolloutspec_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/helixflow/helixflow/internal/rolloutspec"
)

func TestParseSLO(t *testing.T) {
	tests := []struct {
		in       string
		er, p99  float64 // 0: absent
		wantErr  string
		asString string
	}{
		{in: "error_ratio<0.01,p99_ms<200", er: 0.01, p99: 200, asString: "error_ratio<0.01,p99_ms<200"},
		{in: " p99_ms < 250.5 , error_ratio<0.05 ", er: 0.05, p99: 250.5, asString: "error_ratio<0.05,p99_ms<250.5"},
		{in: "error_ratio<1", er: 1, asString: "error_ratio<1"},
		{in: "p99_ms<200", p99: 200, asString: "p99_ms<200"},
		{in: "", wantErr: "empty"},
		{in: "error_ratio<=0.01", wantErr: `"error_ratio<=0.01": want name<number`},
		{in: "error_ratio>0.01", wantErr: "want name<number"},
		{in: "error_ratio=0.01", wantErr: "want name<number"},
		{in: "error_ratio<abc", wantErr: `"abc" is not a number`},
		{in: "error_ratio<Inf", wantErr: "is not a number"},
		{in: "latency<200", wantErr: `unknown SLO "latency" (error_ratio or p99_ms)`},
		{in: "p99_ms<200,p99_ms<100", wantErr: "p99_ms is given twice"},
		{in: "error_ratio<2", wantErr: "slo.error_ratio: 2 is outside (0, 1]"},
		{in: "p99_ms<0", wantErr: "slo.p99_ms: 0 is outside"},
		{in: "error_ratio<0.01,", wantErr: `"": want name<number`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := rolloutspec.ParseSLO(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSLO = %v, %v; want an error with %q", s, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (tt.er == 0) != (s.ErrorRatio == nil) || (s.ErrorRatio != nil && *s.ErrorRatio != tt.er) ||
				(tt.p99 == 0) != (s.P99Ms == nil) || (s.P99Ms != nil && *s.P99Ms != tt.p99) {
				t.Errorf("ParseSLO = %v", s)
			}
			if s.String() != tt.asString {
				t.Errorf("String = %q, want %q", s.String(), tt.asString)
			}
		})
	}
}

func TestParseSteps(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr string
	}{
		{in: "1,5,25,50,100", want: []int{1, 5, 25, 50, 100}},
		{in: " 10%, 100% ", want: []int{10, 100}},
		{in: "100", want: []int{100}},
		{in: "", wantErr: `steps[0]: "" is not a whole percentage`},
		{in: "1,x,100", wantErr: `steps[1]: "x" is not a whole percentage`},
		{in: "1.5,100", wantErr: `steps[0]: "1.5" is not a whole percentage`},
		{in: "10,5,100", wantErr: "steps[1]: 5 is not above steps[0] (10)"},
		{in: "1,5,50", wantErr: "the last step is 100"},
		{in: "0,100", wantErr: "steps[0]: 0 is outside 1..100"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := rolloutspec.ParseSteps(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSteps = %v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("ParseSteps = %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}

// TestDecodeSLO: the slo column as both writers store it (json.Marshal of
// an SLO) reads back; what is not JSON is refused naming the column.
func TestDecodeSLO(t *testing.T) {
	er, p99 := 0.01, 200.0
	b, err := json.Marshal(rolloutspec.SLO{ErrorRatio: &er, P99Ms: &p99})
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"error_ratio":0.01,"p99_ms":200}` {
		t.Errorf("slo column %s", b)
	}
	tests := []struct {
		in, want, wantErr string
	}{
		{in: string(b), want: "error_ratio<0.01,p99_ms<200"},
		{in: `{"p99_ms": 50}`, want: "p99_ms<50"},
		{in: `{}`, want: ""},
		{in: `not json`, wantErr: "slo not json"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, err := rolloutspec.DecodeSLO([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DecodeSLO = %v, %v; want an error with %q", s, err, tt.wantErr)
				}
				return
			}
			if err != nil || s.String() != tt.want {
				t.Fatalf("DecodeSLO = %q, %v; want %q", s.String(), err, tt.want)
			}
		})
	}
}
