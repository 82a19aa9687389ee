package main

import (
	"encoding/binary"
	"encoding/json"
	"strings"
	"testing"
)

func TestWSFrame(t *testing.T) {
	f := wsFrame(7)
	n := binary.LittleEndian.Uint32(f)
	var h struct {
		ID     string `json:"id"`
		Inputs []struct {
			Name       string         `json:"name"`
			Parameters map[string]int `json:"parameters"`
		} `json:"inputs"`
		Parameters map[string]any `json:"parameters"`
	}
	if err := json.Unmarshal(f[4:4+n], &h); err != nil {
		t.Fatal(err)
	}
	raw := 0
	for _, in := range h.Inputs {
		raw += in.Parameters["binary_data_size"]
	}
	if h.ID != "7" || len(h.Inputs) != 2 || raw != 128 || len(f) != 4+int(n)+raw || h.Parameters["binary_data_output"] != true {
		t.Fatalf("frame: id %q, %d inputs, %d raw bytes, frame %d bytes, header %d; parameters %v", h.ID, len(h.Inputs), raw, len(f), n, h.Parameters)
	}
}

func TestStreamsGoal(t *testing.T) {
	for _, tc := range []struct {
		name       string
		points     []*streamsPoint
		wantPrefix string
	}{
		{"none", nil, "not measured"},
		{"met", []*streamsPoint{{c: 64, rate: map[string]float64{modeWS: 900, modeStream: 1000, modeUnary: 800}, errors: map[string]int64{}}}, "met"},
		{"slow", []*streamsPoint{{c: 64, rate: map[string]float64{modeWS: 700, modeStream: 1000}, errors: map[string]int64{}}}, "missed"},
		{"errors", []*streamsPoint{{c: 64, rate: map[string]float64{modeWS: 1000, modeStream: 1000}, errors: map[string]int64{modeWS: 1}}}, "missed"},
		{"no stream rate", []*streamsPoint{{c: 1, rate: map[string]float64{modeWS: 10}, errors: map[string]int64{}}}, "missed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := strings.ToLower(streamsGoal(tc.points))
			if !strings.HasPrefix(got, tc.wantPrefix) {
				t.Fatalf("streamsGoal = %q, want it to start with %q", got, tc.wantPrefix)
			}
		})
	}
}
