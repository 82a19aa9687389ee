package registration

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/helixflow/helixflow/workers/infer"
)

type index struct {
	entries []infer.IndexEntry
	err     error
	asked   []bool
}

func (x *index) RepositoryIndex(_ context.Context, readyOnly bool) ([]infer.IndexEntry, error) {
	x.asked = append(x.asked, readyOnly)
	return x.entries, x.err
}

func TestModelsFrom(t *testing.T) {
	x := &index{entries: []infer.IndexEntry{
		{Name: "a", Version: "1", State: infer.StateReady},
		{Name: "a", Version: "3", State: infer.StateReady},
		{Name: "b", Version: "", State: infer.StateUnavailable, Reason: "bad config"},
		{Name: "c", Version: "2", State: infer.StateReady},
		{Name: "d", Version: "1", State: infer.StateLoading},
	}}
	got, err := ModelsFrom(x)(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := []Model{{Name: "a", Versions: []string{"1", "3"}, Ready: true}, {Name: "c", Versions: []string{"2"}, Ready: true}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	if !reflect.DeepEqual(x.asked, []bool{true}) {
		t.Fatalf("asked readyOnly=%v, want [true]", x.asked)
	}
	x.err = errors.New("disk gone")
	if _, err := ModelsFrom(x)(t.Context()); !errors.Is(err, x.err) {
		t.Fatalf("error %v does not wrap the index error", err)
	}
}
