package pytorch

import "github.com/helixflow/helixflow/workers/tensor"

// codes numbers the KServe datatypes libtorch has, as shim/helix_torch.h
// does (enum helix_torch_dtype). libtorch's unsigned 16/32/64-bit types
// have only partial operator support and BYTES would be a list of strings,
// so those are refused (backend.ErrUnsupported).
var codes = map[tensor.DataType]int32{
	tensor.Bool:  1,
	tensor.Uint8: 2,
	tensor.Int8:  3,
	tensor.Int16: 4,
	tensor.Int32: 5,
	tensor.Int64: 6,
	tensor.FP16:  7,
	tensor.FP32:  8,
	tensor.FP64:  9,
	tensor.BF16:  10,
}

var dataTypes = func() map[int32]tensor.DataType {
	m := make(map[int32]tensor.DataType, len(codes))
	for d, c := range codes {
		m[c] = d
	}
	return m
}()

// DataTypes lists the KServe datatypes this backend serves.
func DataTypes() []tensor.DataType {
	return []tensor.DataType{tensor.Bool, tensor.Uint8, tensor.Int8, tensor.Int16, tensor.Int32, tensor.Int64,
		tensor.FP16, tensor.FP32, tensor.FP64, tensor.BF16}
}
