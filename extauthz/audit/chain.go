package audit

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/helixflow/helixflow/internal/pgtext"
)

// Digest is a SHA-256 value, shown as hex in JSON.
type Digest []byte

// MarshalText writes hex.
func (d Digest) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(d)), nil }

// UnmarshalText reads hex.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	if err != nil {
		return fmt.Errorf("audit: digest: %w", err)
	}
	*d = v
	return nil
}

// Row is one stored event with its place in the chain. Operator, Source
// and UserAgent are empty and Pseudonymised is true once erasure removed
// them.
type Row struct {
	Seq            int64             `json:"seq"`
	At             time.Time         `json:"at"`
	Actor          string            `json:"actor"`
	Action         string            `json:"action"`
	Target         string            `json:"target"`
	Result         string            `json:"result"`
	Detail         map[string]string `json:"detail"`
	Operator       string            `json:"operator,omitempty"`
	Source         string            `json:"source,omitempty"`
	UserAgent      string            `json:"user_agent,omitempty"`
	Pseudonymised  bool              `json:"pseudonymised,omitempty"`
	PersonalDigest Digest            `json:"personal_digest"`
	PrevHash       Digest            `json:"prev_hash"`
	Hash           Digest            `json:"hash"`

	salt []byte // nil once erased
}

// genesis is the prev_hash of the first row ever appended.
var genesis = make([]byte, sha256.Size)

// saltSize is the length of each row's random personal salt.
const saltSize = 16

// canon appends fields as length-prefixed byte strings: no value can be
// read as another's end (a "|" in an actor cannot shift the fields).
type canon struct{ b []byte }

func (c *canon) bytes(v []byte) {
	c.b = binary.BigEndian.AppendUint64(c.b, uint64(len(v)))
	c.b = append(c.b, v...)
}
func (c *canon) str(v string) { c.bytes([]byte(v)) }
func (c *canon) int(v int64)  { c.b = binary.BigEndian.AppendUint64(c.b, uint64(v)) }

// personalDigest is SHA-256(salt ‖ operator ‖ source ‖ user_agent).
func personalDigest(salt []byte, operator, source, userAgent string) []byte {
	c := canon{b: append([]byte(nil), salt...)}
	c.str(operator)
	c.str(source)
	c.str(userAgent)
	sum := sha256.Sum256(c.b)
	return sum[:]
}

// rowHash is SHA-256(prev_hash ‖ canonical(seq, at, actor, action,
// target, result, detail, personal_digest)). at counts microseconds (what
// Postgres keeps); detail is its pairs sorted by key.
func rowHash(r *Row) []byte {
	c := canon{b: append([]byte(nil), r.PrevHash...)}
	c.int(r.Seq)
	c.int(r.At.UnixMicro())
	c.str(r.Actor)
	c.str(r.Action)
	c.str(r.Target)
	c.str(r.Result)
	keys := slices.Sorted(maps.Keys(r.Detail))
	c.int(int64(len(keys)))
	for _, k := range keys {
		c.str(k)
		c.str(r.Detail[k])
	}
	c.bytes(r.PersonalDigest)
	sum := sha256.Sum256(c.b)
	return sum[:]
}

// link checks the chain one row at a time, from an anchor.
type link struct {
	seq  int64  // the last row's seq
	hash []byte // the last row's hash
}

// next checks r as the row after the last one and moves on; a non-empty
// answer says what is wrong with it (the first bad row is r.Seq, or the
// row missing before it: see the answer).
func (l *link) next(r *Row) (badSeq int64, reason string) {
	switch {
	case r.Seq > l.seq+1:
		return l.seq + 1, fmt.Sprintf("rows %d to %d are missing (deleted)", l.seq+1, r.Seq-1)
	case r.Seq <= l.seq:
		return r.Seq, fmt.Sprintf("row %d is out of order after row %d", r.Seq, l.seq)
	case !bytes.Equal(r.PrevHash, l.hash):
		return r.Seq, "prev_hash does not match the hash of the row before: a row before it was replaced, inserted or reordered"
	case subtle.ConstantTimeCompare(rowHash(r), r.Hash) != 1:
		return r.Seq, "hash does not match the row's contents: the row was edited"
	case r.salt == nil && (r.Operator != "" || r.Source != "" || r.UserAgent != ""):
		return r.Seq, "personal fields present without their salt"
	case r.salt != nil && !bytes.Equal(personalDigest(r.salt, r.Operator, r.Source, r.UserAgent), r.PersonalDigest):
		return r.Seq, "personal fields do not match their digest: operator, source or user agent was edited"
	}
	l.seq, l.hash = r.Seq, r.Hash
	return 0, ""
}

// Limits on stored text: an event is recorded even when a caller sent a
// huge or broken user agent, cut to fit rather than refused.
const (
	maxRef       = 300
	maxAction    = 100
	maxOperator  = 200
	maxSource    = 64
	maxUserAgent = 512
	maxDetail    = 32
	maxDetailKey = 64
	maxDetailVal = 1024
)

// Results an event may have.
var results = map[string]bool{ResultSuccess: true, ResultFailure: true, ResultDenied: true}

// prepare checks e and turns it into a row's fields (seq, hashes and
// times are the appender's).
func prepare(e Event) (*Row, error) {
	r := &Row{
		Actor: pgtext.Clip(e.Actor, maxRef), Action: pgtext.Clip(e.Action, maxAction), Target: pgtext.Clip(e.Target, maxRef),
		Result: e.Result, Detail: map[string]string{},
		Operator: pgtext.Clip(e.Operator, maxOperator), Source: pgtext.Clip(e.Source, maxSource), UserAgent: pgtext.Clip(e.UserAgent, maxUserAgent),
	}
	switch {
	case r.Actor == "":
		return nil, fmt.Errorf("audit: event %q has no actor", e.Action)
	case r.Action == "":
		return nil, fmt.Errorf("audit: event of %q has no action", e.Actor)
	case !results[r.Result]:
		return nil, fmt.Errorf("audit: event %q: result %q is not success, failure or denied", e.Action, e.Result)
	case len(e.Detail) > maxDetail:
		return nil, fmt.Errorf("audit: event %q: %d detail entries, at most %d", e.Action, len(e.Detail), maxDetail)
	}
	for k, v := range e.Detail {
		r.Detail[pgtext.Clip(k, maxDetailKey)] = pgtext.Clip(v, maxDetailVal)
	}
	return r, nil
}
