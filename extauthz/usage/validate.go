package usage

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"unicode"
	"unicode/utf8"

	counts "github.com/helixflow/helixflow/internal/usage"
	"github.com/helixflow/helixflow/internal/wire"
	usagev1 "github.com/helixflow/helixflow/proto/usage/v1"
)

// Bounds of a batch (the columns' checks in migration 00007, and what one
// flush of a bounded aggregator holds).
const (
	MaxReporterLen = 300
	MaxModelLen    = counts.MaxModelBytes
	MaxRows        = 100_000
)

// ErrInvalid: a batch the ledger refuses as sent (resending it cannot
// help). The error names the field and row.
var ErrInvalid = errors.New("usage: invalid batch")

// invalidError is a refusal of the batch itself: Rejected tells
// internal/usage's reporter (helix-authz's own, in process) that sending it
// again cannot help; over gRPC it is INVALID_ARGUMENT, which says the same.
type invalidError struct{ err error }

func (e invalidError) Error() string  { return e.err.Error() }
func (e invalidError) Unwrap() error  { return e.err }
func (e invalidError) Rejected() bool { return true }

func invalid(format string, args ...any) error {
	return invalidError{fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)}
}

// minHour and maxHour bound a row's hour to what timestamptz holds, with
// room: 1970 to 9999.
const (
	minHour = 0
	maxHour = 253402297200 // 9999-12-31T23:00:00Z
)

// Validate checks a batch: a reporter, seq from 1, rows whose hour is a
// multiple of 3600, whose client id passes internal/usage.CheckClientID, whose model is a valid model name (wire.CheckModelName)
// of at most MaxModelLen bytes, whose counts fit a bigint, and whose
// latency buckets are none or one per bucket of internal/usage.
func Validate(req *usagev1.RecordRequest) error {
	switch r := req.GetReporter(); {
	case r == "":
		return invalid("reporter is empty")
	case len(r) > MaxReporterLen:
		return invalid("reporter is %d bytes, at most %d", len(r), MaxReporterLen)
	case !utf8.ValidString(r) || hasControl(r):
		return invalid("reporter must be UTF-8 text without control characters")
	}
	if req.GetSeq() == 0 || req.GetSeq() > math.MaxInt64 {
		return invalid("seq %d: want 1 to %d", req.GetSeq(), int64(math.MaxInt64))
	}
	if n := len(req.GetRows()); n > MaxRows {
		return invalid("%d rows, at most %d per batch", n, MaxRows)
	}
	wantBuckets := len(counts.LatencyBounds) + 1
	for i, row := range req.GetRows() {
		h := row.GetHourUnix()
		if h%3600 != 0 || h < minHour || h > maxHour {
			return invalid("rows[%d].hour_unix %d: want a multiple of 3600 between 1970 and 9999", i, h)
		}
		if err := counts.CheckClientID(row.GetClientId()); err != nil {
			return invalid("rows[%d].client_id: %w", i, err)
		}
		if err := wire.CheckModelName(row.GetModel()); err != nil {
			return invalid("rows[%d].model: %w", i, err)
		}
		if len(row.GetModel()) > MaxModelLen {
			return invalid("rows[%d].model is %d bytes, at most %d", i, len(row.GetModel()), MaxModelLen)
		}
		for name, v := range map[string]uint64{"requests": row.GetRequests(), "inferences": row.GetInferences(),
			"errors": row.GetErrors(), "throttled": row.GetThrottled(), "compute_ns": row.GetComputeNs()} {
			if v > math.MaxInt64 {
				return invalid("rows[%d].%s %d is over %d", i, name, v, int64(math.MaxInt64))
			}
		}
		if n := len(row.GetLatencyBuckets()); n != 0 && n != wantBuckets {
			return invalid("rows[%d].latency_buckets has %d counts; want 0 or %d", i, n, wantBuckets)
		}
		for j, v := range row.GetLatencyBuckets() {
			if v > math.MaxInt64 {
				return invalid("rows[%d].latency_buckets[%d] %d is over %d", i, j, v, int64(math.MaxInt64))
			}
		}
	}
	return nil
}

func hasControl(s string) bool {
	return strings.IndexFunc(s, unicode.IsControl) >= 0
}
