package benchdoc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteSection(t *testing.T) {
	const begin, end = "<!-- bench-x:begin -->", "<!-- bench-x:end -->"
	section := begin + "\nnew\n" + end + "\n"
	other := "<!-- bench-y:begin -->\ny\n<!-- bench-y:end -->\n"
	tests := []struct {
		name, doc, want string
		wantErr         bool
	}{
		{"replaces between markers", "a\n" + begin + "\nold\n" + end + "\nb\n", "a\n" + section + "b\n", false},
		{"replaces between markers, keeps another section", other + begin + "\nold\n" + end + "\ntail\n", other + section + "tail\n", false},
		{"replaces at the end without newline", "a\n" + begin + "\nold\n" + end, "a\n" + section, false},
		{"appends when absent", "# Benchmarks\n\nworker\n", "# Benchmarks\n\nworker\n\n" + section, false},
		{"appends after another section", "# Benchmarks\n\n" + other, "# Benchmarks\n\n" + strings.TrimRight(other, "\n") + "\n\n" + section, false},
		{"refuses one marker", "a\n" + begin + "\nold\n", "", true},
		{"refuses markers out of order", end + "\n" + begin + "\n", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "b.md")
			if err := os.WriteFile(path, []byte(tt.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			err := WriteSection(path, begin, end, section)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			got, _ := os.ReadFile(path)
			if tt.wantErr {
				tt.want = tt.doc // left as it was
			}
			if string(got) != tt.want {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestCommas(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{{0, "0"}, {999.4, "999"}, {1000, "1,000"}, {1234567, "1,234,567"}, {-4321, "-4,321"}}
	for _, tt := range tests {
		if got := Commas(tt.in); got != tt.want {
			t.Errorf("Commas(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRatio(t *testing.T) {
	for _, tt := range []struct {
		a, b float64
		want string
	}{{1, 0, "n/a"}, {25, 2, "12x"}, {1, 2, "0.50x"}, {1, 20, "0.050x"}} {
		if got := Ratio(tt.a, tt.b); got != tt.want {
			t.Errorf("Ratio(%v, %v) = %q, want %q", tt.a, tt.b, got, tt.want)
		}
	}
}
