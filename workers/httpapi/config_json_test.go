package httpapi

import (
	"encoding/json"
	"testing"

	pb "github.com/helixflow/helixflow/proto/inference"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestMarshalConfigJSON(t *testing.T) {
	tests := []struct {
		name string
		msg  proto.Message
		want string
	}{
		{
			name: "defaults printed, 64-bit as numbers, maps sorted",
			msg: &pb.ModelDynamicBatching{
				PreferredBatchSize:        []int32{2, 4},
				MaxQueueDelayMicroseconds: 18446744073709551615,
				PriorityQueuePolicy: map[uint64]*pb.ModelQueuePolicy{
					10: {TimeoutAction: pb.ModelQueuePolicy_DELAY, DefaultTimeoutMicroseconds: 5},
					2:  {},
				},
			},
			want: `{"preferred_batch_size":[2,4],"max_queue_delay_microseconds":18446744073709551615,` +
				`"preserve_ordering":false,"priority_levels":0,"default_priority_level":0,` +
				`"priority_queue_policy":{"10":{"timeout_action":"DELAY","default_timeout_microseconds":5,` +
				`"allow_timeout_override":false,"max_queue_size":0},"2":{"timeout_action":"REJECT",` +
				`"default_timeout_microseconds":0,"allow_timeout_override":false,"max_queue_size":0}}}`,
		},
		{
			name: "unset oneof and messages left out",
			msg: &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Specific_{
				Specific: &pb.ModelVersionPolicy_Specific{Versions: []int64{1, 3}},
			}},
			want: `{"specific":{"versions":[1,3]}}`,
		},
		{
			name: "output in declaration order",
			msg:  &pb.ModelOutput{Name: "y", DataType: pb.DataType_TYPE_STRING, Dims: []int64{-1, 2}, LabelFilename: "l.txt"},
			want: `{"name":"y","data_type":"TYPE_STRING","dims":[-1,2],"label_filename":"l.txt","is_shape_tensor":false,"is_non_linear_format_io":false}`,
		},
		{name: "empty", msg: &pb.ModelConfig{}, want: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := marshalConfigJSON(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestMarshalConfigJSONReadsBack checks a full configuration against
// protojson: the same message must come back from what we print, so that a
// client can post it back as a load "config".
func TestMarshalConfigJSONReadsBack(t *testing.T) {
	cfg := &pb.ModelConfig{
		Name: "densenet", Platform: "onnxruntime_onnx", Backend: "onnxruntime", MaxBatchSize: 8,
		VersionPolicy: &pb.ModelVersionPolicy{PolicyChoice: &pb.ModelVersionPolicy_Latest_{
			Latest: &pb.ModelVersionPolicy_Latest{NumVersions: 1},
		}},
		Input: []*pb.ModelInput{{
			Name: "data_0", DataType: pb.DataType_TYPE_FP32, Format: pb.ModelInput_FORMAT_NCHW, Dims: []int64{3, 224, 224},
			Reshape: &pb.ModelTensorReshape{Shape: []int64{1, 3, 224, 224}},
		}},
		Output: []*pb.ModelOutput{{Name: "prob", DataType: pb.DataType_TYPE_FP32, Dims: []int64{1000}}},
		SchedulingChoice: &pb.ModelConfig_DynamicBatching{DynamicBatching: &pb.ModelDynamicBatching{
			PreferredBatchSize: []int32{4}, MaxQueueDelayMicroseconds: 100,
		}},
		InstanceGroup: []*pb.ModelInstanceGroup{{Name: "g", Kind: pb.ModelInstanceGroup_KIND_GPU, Count: 2, Gpus: []int32{0}}},
		Parameters:    map[string]*pb.ModelParameter{"intra_op_thread_count": {StringValue: "4"}},
	}
	body, err := marshalConfigJSON(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(body, &generic); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	for _, key := range []string{"batch_input", "batch_output", "model_warmup", "cc_model_filenames", "metric_tags"} {
		if _, ok := generic[key]; !ok {
			t.Errorf("empty field %q must be printed", key)
		}
	}
	for _, key := range []string{"sequence_batching", "ensemble_scheduling", "optimization", "response_cache"} {
		if _, ok := generic[key]; ok {
			t.Errorf("unset message %q must be left out", key)
		}
	}
	back := &pb.ModelConfig{}
	if err := protojson.Unmarshal(body, back); err != nil {
		t.Fatalf("protojson cannot read it back: %v\n%s", err, body)
	}
	if !proto.Equal(cfg, back) {
		t.Errorf("read back a different config:\n%v\nwant\n%v", back, cfg)
	}
}
